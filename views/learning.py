"""Lesson "Watch it learn": the class trains the classifier here, then teaches it one scan.

The page's code lives in views/learning_lesson.py: an imported module is compiled once per process,
while a page file is re-read on every run.
"""

from views.learning_lesson import main

main()
