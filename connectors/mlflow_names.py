"""The names runferry gives things in MLflow: metric, param and image keys, artifact paths, source tags.

One rule for every key (``mlflow_key``):

1. a sequence in a context is ``<context>/<name>``, the context's values in the order of their sorted
   keys joined by ``/`` (Aim's ``{'entry': 'train'}`` → ``train/loss``); no context: ``<name>`` as written;
2. a character MLflow refuses in a key (anything but letters, digits, ``_ - . : /`` and space; for an
   image key, anything but ASCII letters, digits, ``_ - . /`` and space, as ``log_image`` demands)
   becomes ``_``;
3. MLflow refuses keys that would resolve to another path: empty segments (``a//b``, a leading or
   trailing ``/``) are dropped and a ``.`` or ``..`` segment becomes ``_``; an empty key becomes ``_``.

A key changed by rules 2-3 is *renamed* (the run's tag ``runferry.renamed_keys`` lists each original
beside its new name). A key longer than MLflow's 250 characters, or one that two different names of
the same run would share after renaming, is refused: its points are dead letters.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, Optional

__all__ = ['mlflow_key', 'context_prefix', 'key_problem', 'source_id', 'MAX_KEY_LENGTH', 'SOURCE_TAG',
           'SOURCE_ID_TAG', 'RENAMED_TAG', 'TAG_PREFIX']

MAX_KEY_LENGTH = 250  # mlflow.utils.validation.MAX_ENTITY_KEY_LENGTH
SOURCE_TAG = 'runferry.source'  # the source run's identity (masked), as a person reads it
SOURCE_ID_TAG = 'runferry.source_id'  # its digest: what a re-run searches by (no quoting problems)
RENAMED_TAG = 'runferry.renamed_keys'
TAG_PREFIX = 'runferry.'

_REFUSED = re.compile(r'[^/\w.\- :]')  # mlflow.utils.validation.validate_param_and_metric_name (POSIX)
_REFUSED_IN_IMAGE_KEY = re.compile(r'[^a-zA-Z0-9_\-./ ]')  # MlflowClient.log_image's key check


def context_prefix(context: Optional[Dict[str, Any]]) -> str:
    """``{'entry': 'train'}`` → ``'train'``; several entries in the order of their keys; ``{}`` → ``''``."""
    return '/'.join(str(value) for _, value in sorted((context or {}).items()) if value is not None)


def mlflow_key(name: str, context: Optional[Dict[str, Any]] = None, image: bool = False) -> str:
    """The MLflow key of the sequence ``name`` in ``context`` (rules 1-3 of the module's docstring)."""
    prefix = context_prefix(context)
    key = f'{prefix}/{name}' if prefix else name
    key = (_REFUSED_IN_IMAGE_KEY if image else _REFUSED).sub('_', key)
    segments = ['_' if segment in ('.', '..') else segment for segment in key.split('/') if segment]
    return '/'.join(segments) or '_'


def key_problem(key: str) -> Optional[str]:
    """Why MLflow would refuse ``key`` even after renaming, or None."""
    if len(key) > MAX_KEY_LENGTH:
        return f'key longer than MLflow allows ({len(key)} > {MAX_KEY_LENGTH} characters)'
    return None


def source_id(identity: str) -> str:
    """The digest of a source run's identity, stored as the ``runferry.source_id`` tag and searched by."""
    return hashlib.sha256(identity.encode('utf-8')).hexdigest()[:40]
