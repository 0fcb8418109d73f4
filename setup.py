# Kept for `pip install -e .` with the old setuptools that Ryu 4.34 needs; metadata is in setup.cfg.
from setuptools import setup

setup()
