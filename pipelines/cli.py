"""The command-line layer every entry point shares: the run's flags, Beam's flags, masking.

``pipelines.convert`` makes a command's parser with ``new_parser``, adds its source's and its
destination's flags (``pipelines.seam``), then the shared ones with ``add_shared_flags`` (``--dry-run``,
``--skipped``, ``--strict``, ``--report``), and parses with ``parse_command``. What its parser does not
take goes to Beam, but only if Beam knows it: a flag that is neither the program's nor a Beam/runner
option (``--dryrun``, ``--falt``) would be dropped by Beam with a warning ("Discarding unparseable
args") and the conversion would run without it, so it is refused here, with a "did you mean" line,
before any work. Beam's options are the ones Beam itself parses: every option registered by a direct
subclass of ``PipelineOptions`` (as ``PipelineOptions.get_all_options`` collects them), after the
``--runner``'s module is loaded (a runner may register its own options).

``start`` sets up logging with every secret masked (``connectors.redact``), and ``parse_command``
remembers the secrets of the URIs and storage options it parsed so that masking finds them anywhere.
"""
from __future__ import annotations

import argparse
import difflib
import logging
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from connectors import redact
from pipelines.common import UsageError

__all__ = ['new_parser', 'add_shared_flags', 'parse_command', 'check_pipeline_args', 'program_flags',
           'suggestion', 'start', 'LOGGERS']

# runferry's own loggers (a logger's filter sees only records logged to it, not to its children): the
# masking filter sits on each, and on the root logger's handlers, which every propagated record reaches
# (each program's own logger, named after it, is added by ``start(prog)``)
LOGGERS = ('flex_template', 'runferry.retry', 'connectors.aim_sink')


def new_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """An entry point's parser: ``python -m pipelines.PROG``, described by its module docstring's first line."""
    # allow_abbrev=False: argparse would take ``--stric`` for ``--strict`` and ``--rep`` for ``--repo``; a
    # prefix is a typo to name, as any other unknown flag is (``check_pipeline_args``)
    return argparse.ArgumentParser(prog=f'python -m pipelines.{prog}', description=doc.split('\n')[0],
                                   allow_abbrev=False, epilog='Any other flag must be a Beam option (--runner, --direct_num_workers, '
                                          "Dataflow's --project, ...); it goes to Beam.")


def add_shared_flags(parser: argparse.ArgumentParser, dry_run_help: str) -> None:
    """The flags of the run, the same for every entry point (after the source's and destination's)."""
    parser.add_argument('--dry-run', '--dry_run', dest='dry_run', action='store_true', help=dry_run_help)
    parser.add_argument('--skipped', help='dead-letter JSON-lines file (default: beside a local destination, else in '
                                          'the working directory)')
    parser.add_argument('--strict', action='store_true', help='exit 1 if anything was skipped')
    parser.add_argument('--report', help='also write the final report as JSON to this path')


def parse_command(parser: argparse.ArgumentParser, argv: Optional[List[str]]
                  ) -> Tuple[argparse.Namespace, List[str]]:
    """``(the program's arguments, Beam's arguments)``; a flag neither knows is a ``UsageError``. Every
    secret parsed is remembered."""
    known, pipeline_args = parser.parse_known_args(argv)
    check_pipeline_args(pipeline_args, parser)
    redact.remember(_secrets_of(vars(known).values()) | _secrets_of_beam_args(pipeline_args))
    return known, pipeline_args


def _secrets_of_beam_args(pipeline_args: Sequence[str]) -> Set[str]:
    """The values of Beam's secret flags (``--s3_secret_access_key``, ``--s3_session_token``...) and the
    secrets of the URIs in any Beam flag's value."""
    found: Set[str] = set()
    for position, arg in enumerate(pipeline_args):
        name, equals, value = arg.partition('=')
        if not equals:
            following = pipeline_args[position + 1] if position + 1 < len(pipeline_args) else ''
            name, value = arg, ('' if following.startswith('-') else following)
        if not name.startswith('--') or not value:
            continue
        if redact.is_secret_name(name[2:]):
            found.add(value)
        found |= redact.secrets_of_uri(value)
    return found


def _secrets_of(values: Iterable[object]) -> Set[str]:
    """The literal secrets in parsed flag values: URIs' passwords and secret parameters, and the
    secret-named values of JSON objects (``--storage-options``)."""
    found: Set[str] = set()
    for value in values:
        if isinstance(value, str):
            found |= redact.secrets_of_uri(value)
        elif isinstance(value, dict):
            found |= redact.secrets_of_options(value)
        elif isinstance(value, (list, tuple)):
            found |= _secrets_of(value)
    return found


def program_flags(parser: argparse.ArgumentParser) -> List[str]:
    """Each of the parser's flags by its first (dashed) spelling: what a suggestion names."""
    # argparse has no public list of its actions; _actions is the documented-by-use way in.
    return [action.option_strings[0] for action in parser._actions
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != 'help']


def _beam_parser(pipeline_args: Sequence[str]) -> argparse.ArgumentParser:
    """A parser of every option Beam itself would parse for these arguments, as ``get_all_options``
    builds it, after loading the ``--runner``'s module (where a runner's own options are registered)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

    runner = PipelineOptions(list(pipeline_args)).view_as(StandardOptions).runner
    if isinstance(runner, str):
        try:
            from apache_beam.runners.runner import create_runner
            create_runner(runner)
        except Exception:  # an unknown or uninstalled runner: Beam reports it when the pipeline starts
            pass
    parser = _BeamArgumentParser(allow_abbrev=False, exit_on_error=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def _long_flags(parser: argparse.ArgumentParser) -> List[str]:
    return [option for action in parser._actions for option in action.option_strings if option.startswith('--')]


def suggestion(flag: str, parser: argparse.ArgumentParser, beam: Iterable[str]) -> Optional[str]:
    """The closest flag to a mistyped one, the program's first (``--dryrun`` → ``--dry-run``)."""
    name = flag.split('=', 1)[0]
    for candidates in (program_flags(parser), list(beam)):
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
        if close:
            return close[0]
    close = difflib.get_close_matches(name, program_flags(parser) + list(beam), n=1)
    return close[0] if close else None


def check_pipeline_args(pipeline_args: Sequence[str], parser: argparse.ArgumentParser) -> None:
    """Every argument the program did not take must be a Beam option (``--x y`` or ``--x=y``) or its
    value; otherwise a ``UsageError`` naming the first one (never its value), with a suggestion."""
    if not pipeline_args:
        return
    beam = _beam_parser(pipeline_args)
    try:
        _, unknown = beam.parse_known_args(list(pipeline_args))
    except (argparse.ArgumentError, ValueError, TypeError) as error:  # a bad value: --direct_num_workers x
        raise UsageError(str(error)) from None
    if not unknown:
        return
    first = next((arg for arg in unknown if arg.startswith('-')), unknown[0])
    if not first.startswith('-'):
        raise UsageError(f'unexpected argument {first!r} (every value follows its flag)')
    name = first.split('=', 1)[0]
    close = suggestion(name, parser, _long_flags(beam))
    hint = f'; did you mean {close}?' if close else ''
    raise UsageError(f'unknown flag {name}: neither a flag of this program nor a Beam option{hint}')


def start(prog: Optional[str] = None) -> None:
    """What every entry point does first: INFO logging to stderr, and secrets masked in every record
    (the filter, on runferry's loggers and the program's own, ``prog``), every uncaught exception (the
    hook) and whatever the process prints (its streams)."""
    redact.mask_streams()
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    redact.mask_logging(*LOGGERS, *([prog] if prog else []))
    redact.mask_excepthook()
