"""Masking secrets in what runferry shows: URIs' passwords, secret query values, storage-option values.

A tracking URI (``http://alice:pw@host/``, ``postgresql://user:pw@db/mlflow``, ``https://host/x?token=…``)
or a ``--storage-options`` object (``{"key": …, "secret": …}``) reaches error lines, log warnings, the
report, dead letters, dry-run plans and Aim attributes, often inside a library's own exception text
(MLflow's "API request to http://alice:pw@host/… failed", SQLAlchemy, botocore). Every such boundary
passes its text through ``mask_text``, which

* masks the password of every ``scheme://user:password@host`` in the text (the user is kept),
* masks the value of every secret-named query or fragment parameter (``token``, ``sig``, ``X-Amz-…``,
  see ``is_secret_name``) and of ``name=value`` / ``"name": "value"`` pairs with a secret name,
* masks every literal secret the launcher has remembered (``remember``): the passwords and secret
  values of the URIs and storage options it was given, raw and percent-encoded, wherever a library
  prints them in another shape.

Pure functions (the remembered set aside), standard library only: the lowest layer, used by all.
"""
from __future__ import annotations

import logging
import re
import sys
import traceback
import urllib.parse
from typing import Any, FrozenSet, Iterable, Iterator, Optional, Set

__all__ = ['MASK', 'is_secret_name', 'mask_uri', 'mask_text', 'mask_options', 'secrets_of_uri',
           'secrets_of_options', 'remember', 'remembered', 'MaskingFilter', 'mask_logging', 'mask_excepthook',
           'MaskingStream', 'mask_streams']

MASK = '***'

# Parameter or option names whose value is a secret: exact names, and parts that make any name one.
_SECRET_NAMES = frozenset({'sig', 'pass', 'pwd', 'key'})
_SECRET_PARTS = ('password', 'passwd', 'secret', 'token', 'signature', 'credential', 'apikey', 'api_key',
                 'access_key', 'account_key', 'private_key', 'auth', 'connection_string', 'sas')
_SECRET_PREFIXES = ('x_amz_', 'x_goog_')
# Literal secrets shorter than this are not searched for in free text (they would mask ordinary words).
_MIN_LITERAL = 4

_URI = re.compile(r'''\b([A-Za-z][A-Za-z0-9+.\-]*://)([^\s'"<>`]*)''')
# name=value / name='value' (a DSN, keyword arguments) and "name": "value" / 'name': 'value' (a JSON
# object, a dict's repr) in free text; an unquoted name followed by ':' is prose ("exit code: 1"), not a pair
_ASSIGN = re.compile(r'''(?<![\w.\-])(?P<name>[A-Za-z_][\w.\-]*)(?P<sep>=)'''
                     r'''(?P<vq>["'])?(?P<value>(?(vq)[^"'\n]*|[^\s"',;&)}\]]+))''')
_ENTRY = re.compile(r'''(?P<q>["'])(?P<name>[A-Za-z_][\w.\-]*)(?P=q)(?P<sep>\s*:\s*)'''
                    r'''(?P<vq>["'])(?P<value>[^"'\n]*)''')

_remembered: Set[str] = set()


def is_secret_name(name: str) -> bool:
    """True for a query parameter or option name whose value must not be shown: ``token``,
    ``access_token``, ``password``, ``secret``, ``key``, ``sig``, ``signature``, ``X-Amz-Signature``,
    ``X-Goog-Credential``, ``client_secret``, ``sas_token``, ``account_key``..."""
    word = name.strip().lower().replace('-', '_')
    return (word in _SECRET_NAMES or word.startswith(_SECRET_PREFIXES)
            or any(part in word for part in _SECRET_PARTS))


def _mask_parameters(text: str) -> str:
    """``a=1&token=x;sig=y`` → ``a=1&token=***;sig=***`` (the separators and order kept)."""
    parts = re.split(r'([&;])', text)
    for i in range(0, len(parts), 2):
        name, equals, value = parts[i].partition('=')
        if equals and value and is_secret_name(urllib.parse.unquote_plus(name)):
            parts[i] = f'{name}={MASK}'
    return ''.join(parts)


def _mask_after_scheme(rest: str) -> str:
    """The part of a URI after ``scheme://``, with its password and secret parameters masked."""
    end = len(rest)
    for mark in '/?#':
        found = rest.find(mark)
        if found != -1:
            end = min(end, found)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition('@')
    if at and ':' in userinfo:
        user = userinfo.partition(':')[0]
        authority = f'{user}:{MASK}@{host}'
    path, question, query = tail.partition('?')
    if not question:
        path, hash_, fragment = tail.partition('#')
        return authority + path + (hash_ + _mask_parameters(fragment) if hash_ else '')
    query, hash_, fragment = query.partition('#')
    return (authority + path + question + _mask_parameters(query)
            + (hash_ + _mask_parameters(fragment) if hash_ else ''))


def mask_uri(uri: Optional[str]) -> Optional[str]:
    """One URI with its password and its secret query (and fragment) values masked; the rest — scheme,
    user, host, path, other parameters — kept character for character. Not a URI: returned as is."""
    if not uri:
        return uri
    scheme, sep, rest = uri.partition('://')
    if not sep or not re.fullmatch(r'[A-Za-z][A-Za-z0-9+.\-]*', scheme):
        return uri
    return scheme + sep + _mask_after_scheme(rest)


def _mask_pair(match: 're.Match[str]') -> str:
    if not is_secret_name(match.group('name')) or not match.group('value') or match.group('value').startswith(MASK):
        return match.group(0)
    return match.group(0)[:match.start('value') - match.start(0)] + MASK


def mask_text(text: Any, secrets: Iterable[str] = ()) -> str:
    """Free text (an error line, a log message, a traceback) with every secret masked: passwords and
    secret parameters of the URIs in it, secret ``name=value`` pairs, and the literal ``secrets`` plus
    those remembered by ``remember``. Not a string: its ``str``."""
    text = text if isinstance(text, str) else str(text)
    literals = sorted((s for s in {*_remembered, *secrets} if len(s) >= _MIN_LITERAL), key=len, reverse=True)
    for literal in literals:  # first: a later pattern could split a literal and leave part of it
        if literal in text:
            text = text.replace(literal, MASK)
    if '://' in text:
        text = _URI.sub(lambda m: m.group(1) + _mask_after_scheme(m.group(2)), text)
    if '=' in text:
        text = _ASSIGN.sub(_mask_pair, text)
    if ':' in text:
        text = _ENTRY.sub(_mask_pair, text)
    return text


def mask_options(options: Any) -> Any:
    """A storage-options object (nested dicts/lists) with every secret-named value masked and the URIs
    in the other string values masked: what may be shown of it."""
    if isinstance(options, dict):
        return {key: MASK if is_secret_name(str(key)) and value not in (None, '', False) else mask_options(value)
                for key, value in options.items()}
    if isinstance(options, (list, tuple)):
        return [mask_options(value) for value in options]
    if isinstance(options, str):
        return mask_text(options)
    return options


def _spellings(value: str) -> Iterator[str]:
    """A secret as given, percent-decoded and percent-encoded: how libraries may print it."""
    yield value
    yield urllib.parse.unquote_plus(value)
    yield urllib.parse.quote(value, safe='')
    yield urllib.parse.quote_plus(value, safe='')


def secrets_of_uri(uri: Optional[str]) -> FrozenSet[str]:
    """The literal secrets in one URI: its password and its secret parameters' values (each spelled as
    given, decoded and encoded)."""
    found: Set[str] = set()
    if not uri or '://' not in uri:
        return frozenset()
    rest = uri.partition('://')[2]
    authority = re.split(r'[/?#]', rest, maxsplit=1)[0]
    userinfo, at, _ = authority.rpartition('@')
    if at and ':' in userinfo:
        found.update(_spellings(userinfo.partition(':')[2]))
    for part in re.split(r'[?#&;]', rest)[1:]:
        name, equals, value = part.partition('=')
        if equals and value and is_secret_name(urllib.parse.unquote_plus(name)):
            found.update(_spellings(value))
    return frozenset(s for s in found if s)


def secrets_of_options(options: Any, secret: bool = False) -> FrozenSet[str]:
    """Every string (and number) held under a secret-named key of a storage-options object, at any depth,
    and the secrets of the URIs in its other values."""
    found: Set[str] = set()
    if isinstance(options, dict):
        for key, value in options.items():
            found |= secrets_of_options(value, secret or is_secret_name(str(key)))
    elif isinstance(options, (list, tuple)):
        for value in options:
            found |= secrets_of_options(value, secret)
    elif isinstance(options, str):
        found |= set(_spellings(options)) if secret else secrets_of_uri(options)
    elif secret and isinstance(options, (int, float)) and not isinstance(options, bool):
        found.add(str(options))
    return frozenset(s for s in found if s)


def remember(secrets: Iterable[str]) -> None:
    """Add literal secrets that ``mask_text`` masks from now on, in this process (the launcher's; a
    worker gets them passed explicitly, as ``WriteSkipped`` does)."""
    _remembered.update(s for s in secrets if s)


def remembered() -> FrozenSet[str]:
    return frozenset(_remembered)


class MaskingFilter(logging.Filter):
    """Masks the secrets of every record it sees (message, arguments and traceback): set on handlers,
    it covers every logger whose records reach them, libraries' included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(''.join(traceback.format_exception(*record.exc_info)).rstrip('\n'))
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


_FILTER = MaskingFilter()


def mask_logging(*logger_names: str) -> None:
    """Put the masking filter on the root logger's handlers and on the named loggers (a logger's own
    filter also covers records logged to it in processes whose handlers are not ours)."""
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _masked_excepthook(kind, error, trace) -> None:
    sys.stderr.write(mask_text(''.join(traceback.format_exception(kind, error, trace))))


def mask_excepthook() -> None:
    """An exception that ends the program is printed with its secrets masked."""
    sys.excepthook = _masked_excepthook


class MaskingStream:
    """A text stream that masks what is written to it before passing it on: ``sys.stdout``/``sys.stderr``
    of a program, so that libraries' own handlers and prints (MLflow logs through a handler of its own)
    are masked too. Each ``write`` is masked alone: a secret is found when one call writes it whole, as
    ``print`` and ``logging`` do with each message."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):  # flush, fileno, isatty, encoding... of the stream underneath
        return getattr(self._stream, name)


def mask_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` in a ``MaskingStream`` (once)."""
    if not isinstance(sys.stdout, MaskingStream):
        sys.stdout = MaskingStream(sys.stdout)
    if not isinstance(sys.stderr, MaskingStream):
        sys.stderr = MaskingStream(sys.stderr)
