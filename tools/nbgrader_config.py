"""nbgrader settings for grading this course with nbgrader: copy this file into your nbgrader
course directory (next to source/), or add its lines to your own nbgrader_config.py.

The notebooks in solutions/ already carry nbgrader's cell metadata (``make exercises`` stamps
it), so ``nbgrader generate_assignment`` gives the notebooks in exercises/, and ``nbgrader
autograde`` scores each check() cell with its item's points.
"""

c = get_config()  # noqa: F821 (nbgrader's config loader defines get_config)

# check() reports a wrong answer without raising, which nbgrader would score as a pass.
# Its strict mode raises AssertionError instead. Turn it on in the kernels nbgrader starts
# (autograde, validate) and nowhere else: students' own kernels keep the friendly report.
c.Execute.extra_arguments = [
    "--IPKernelApp.exec_lines=import os; os.environ['COURSEKIT_GRADING_STRICT'] = '1'",
]

# One cell may train a small network and each check() may take up to its item's time
# limit: nbgrader's default of 30 s per cell is too short on a small CPU.
c.Execute.timeout = 300

# The exercise generator's stub for a worked answer in markdown (nbgrader's default is
# "YOUR ANSWER HERE"), so nbgrader's release matches exercises/.
c.ClearSolutions.text_stub = "*Your answer here.*"
