"""Sources of the Python-backend models that :func:`focal.serving.triton_repo.write_repository` copies in.

Each of ``preprocess.py``, ``features.py`` and ``postprocess.py`` becomes a
model's ``1/model.py``. They run inside Triton's Python-backend stub, import
``triton_python_backend_utils`` (only there) and :mod:`focal.runtime`, and
read the model's facts from ``1/focal.json``. Nothing imports them here:
this package only holds the files, and :mod:`._common` the few helpers
they share.
"""

__all__: list[str] = []
