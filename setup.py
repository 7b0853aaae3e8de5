"""Package metadata lives in setup.cfg; this file lets `pip install -e .` work."""
import setuptools

setuptools.setup()
