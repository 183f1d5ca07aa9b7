"""Running ConvScope for a whole class: replicas behind a sticky HAProxy (deploy.local), image and manifests."""
