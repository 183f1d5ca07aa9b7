"""Pure drawing for ConvScope: arrays in, RGB uint8 arrays out; nothing here imports Streamlit."""
