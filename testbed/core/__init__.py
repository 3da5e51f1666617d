"""The shared core: platform types, configuration values, errors, loaders and the results schema.

Every other part of the project (gateway, backends, loadgen, scheduler, experiments) imports
from here; this package imports nothing else of the project.
"""
