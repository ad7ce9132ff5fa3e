"""The lessons' review questions, one JSON file per lesson (``08.json`` for lesson 08).

``coursekit.viz.quiz("08")`` loads them. Each file holds ``{"lesson": "08", "questions": [...]}``;
a question has ``prompt``, ``choices`` (2 to 26), ``answer`` (the index of the right choice),
``explanation`` (shown after checking) and ``worked`` (the worked answer, Markdown). `backticks`
mark code and $...$ marks math. Keeping them here keeps the answers out of the notebooks.
"""
