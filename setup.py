# Only the C extension lives here; all metadata is in pyproject.toml.
from setuptools import Extension, setup

setup(ext_modules=[Extension("pychro._atomic", ["pychro/_atomic.c"], extra_compile_args=["-O2"])])
