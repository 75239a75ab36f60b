"""The config a run recorded: `--config=configs/saved.py:DIR/config.json` re-creates it.

The Ray launcher starts every run this way, so a run's subprocess trains exactly the config the
driver wrote and checked (the workdir guard compares the two again on start-up). JSON has no
tuples: every list becomes a tuple, as every sequence field of our configs is one.
"""

from __future__ import annotations

import os

import ml_collections

from hyper_ensembles.runs import workdir as workdir_lib


def get_config(path: str) -> ml_collections.ConfigDict:
  if not path or not os.path.exists(path):
    raise FileNotFoundError(
        f'configs/saved.py needs the path of a run\'s config.json after the colon, e.g. '
        f'--config=configs/saved.py:DIR/config.json; got {path!r}')
  return workdir_lib.load_config_file(path)
