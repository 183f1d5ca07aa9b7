"""Lesson 1, "A kernel scans the image": convolution, activation and pooling step by step on a real scan.

The page's code lives in views/convolution_lesson.py: an imported module is compiled once per process,
while a page file is re-read on every run.
"""

from views.convolution_lesson import main

main()
