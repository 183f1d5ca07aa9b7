"""Lesson "Volumes and video": a 3-D kernel steps through slices, voxel by voxel; clips as 2-D + time.

The page's code lives in views/volumes_lesson.py: an imported module is compiled once per process,
while a page file is re-read on every run.
"""

from views.volumes_lesson import main

main()
