"""Grade a whole class: ``python -m tinyba2m.grade SUBMISSIONS`` (see ``__main__.py`` and lessons/README.md).

``runner.py`` runs one student's exercise in its own subprocess (time, memory and output bounded),
``child.py`` is what that subprocess runs (the exercise's checks, written as gradcheck records),
``__main__.py`` walks the class and writes grades.csv, the feedback files and the summary.
"""
