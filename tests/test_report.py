"""The final report a person reads: ``print_report`` on fixed counters, then the report printed by whole
conversions of known inputs (a TensorBoard logdir with damaged files, an MLflow store), parsed back and
compared number by number with what the inputs hold."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import time

import pytest

from pipelines.destinations.aim import AimDestination
from pipelines.report import points_by_kind, print_report, print_tree, reason_label, skipped_by_reason


def aim_report(counters, elapsed, repo, skipped_path, out):
    """The report as a conversion into the Aim repo ``repo`` prints it (ending with its lines)."""
    print_report(counters, elapsed=elapsed, skipped_path=skipped_path, out=out,
                 closing_lines=AimDestination(repo).report_lines(counters))


# ------------------------------------------------------------------------------------------ reading it

def parse_report(text: str) -> dict:
    """The printed report → {'counts': {label: n}, 'kinds': {kind: (read, written, skipped)},
    'reasons': {label: amount}, 'elapsed': s, 'throughput': n, 'aim_up': repo or None}."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if line == 'runferry report')
    report = {'counts': {}, 'kinds': {}, 'reasons': {}, 'elapsed': None, 'throughput': None, 'aim_up': None,
              'skipped_path': None}
    section = 'counts'
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if line.startswith('  points by kind'):
            section = 'kinds'
            assert line.split()[3:] == ['read', 'written', 'skipped'], line
            continue
        if line.startswith('  skipped by reason'):
            section = 'reasons'
            continue
        match = re.fullmatch(r'  elapsed\s+([\d,.]+) s', line)
        if match:
            report['elapsed'] = float(match.group(1).replace(',', ''))
            section = 'end'
            continue
        match = re.fullmatch(r'  throughput\s+([\d,]+) points/s \(points written / elapsed\)', line)
        if match:
            report['throughput'] = int(match.group(1).replace(',', ''))
            continue
        match = re.fullmatch(r'View the result: aim up --repo (.+)', line)
        if match:
            report['aim_up'] = match.group(1)
            break
        match = re.fullmatch(r'  every skipped item, with its reason, is listed in (.+)', line)
        if match:
            report['skipped_path'] = match.group(1)
            continue
        if section == 'counts':
            match = re.fullmatch(r'  (\S.*?)\s+([\d,]+)', line)
            assert match and len(line) == 31, f'not a count row: {line!r}'  # numbers end in one column
            report['counts'][match.group(1)] = int(match.group(2).replace(',', ''))
        elif section == 'kinds':
            match = re.fullmatch(r'    (\S+)\s+([\d,-]+)\s+([\d,-]+)\s+([\d,-]+)', line)
            assert match, f'not a kind row: {line!r}'
            report['kinds'][match.group(1)] = tuple(int(g.replace(',', '')) for g in match.groups()[1:])
        elif section == 'reasons':
            match = re.fullmatch(r'    (\S.*?)\s{2,}(\d[\d,]* \w+(?: \([\d,]+ points?\))?)', line)
            assert match, f'not a reason row: {line!r}'
            report['reasons'][match.group(1)] = match.group(2)
        elif line.strip() != 'nothing was skipped':
            raise AssertionError(f'unexpected report line: {line!r}')
    return report


def run_printing(function, argv):
    """Run a pipeline's ``run(argv)`` in this process; its exit status, what it printed, wall seconds."""
    stdout = io.StringIO()
    began = time.time()
    with contextlib.redirect_stdout(stdout):
        status = function(argv)
    return status, stdout.getvalue(), time.time() - began


@contextlib.contextmanager
def job_log():
    """What the job logs as its report (the ``runferry.report`` logger, at INFO as on Dataflow's workers)."""
    logged, logger = io.StringIO(), logging.getLogger('runferry.report')
    handler, level = logging.StreamHandler(logged), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logged
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def check_job_report(printed: str, logged: str, document: dict, repo: str):
    """The report the job wrote itself (``--report`` JSON, and the table in its log) holds the numbers the
    launcher printed from Beam's metrics; only the elapsed time (and so the throughput) differs."""
    timeless = ('elapsed', 'throughput')
    launcher, job = parse_report(printed), parse_report(logged)
    assert {k: v for k, v in job.items() if k not in timeless} == \
        {k: v for k, v in launcher.items() if k not in timeless}
    rendered = io.StringIO()  # the JSON's numbers, as the launcher would print them
    reasons = [(r['reason'], r['kind'], r['items'], r['count']) for r in document['skipped_by_reason']]
    print_report(document['counters'], document['elapsed_seconds'], document['skipped_path'], out=rendered,
                 reasons=reasons, closing_lines=AimDestination(repo).report_lines(document['counters']))
    from_json = parse_report(rendered.getvalue())
    assert {k: v for k, v in from_json.items() if k not in timeless} == \
        {k: v for k, v in launcher.items() if k not in timeless}
    assert 0 < document['elapsed_seconds'] <= launcher['elapsed'] + 0.05


# ------------------------------------------------------------------------------------- print_report alone

COUNTERS = {
    'runs_written': 6, 'runs_failed': 1, 'contexts_written': 8, 'files_read': 8, 'files_skipped': 1,
    'files_ignored': 2, 'records_read': 1234, 'records_skipped': 2,
    'points_read': 12_345, 'points_written': 12_000, 'points_skipped': 345,
    'points_read:metric': 12_000, 'points_written:metric': 11_690,
    'points_read:image': 30, 'points_written:image': 30,
    'points_read:zebra': 5, 'points_written:zebra': 5,
    'points_written:distribution': 3, 'points_read:distribution': 3,
    'points_written:hparams': 2,
}
LETTERS = [
    {'kind': 'file', 'reason': 'unorganized event file (not in a run directory)', 'source': 'a/x', 'count': 1},
    {'kind': 'file', 'reason': 'unorganized event file (not in a run directory)', 'source': 'b/x', 'count': 1},
    {'kind': 'record', 'reason': 'truncated record (35 of 42 bytes) at end of file', 'source': 'c', 'count': 1,
     'offset': 416},
    {'kind': 'record', 'reason': 'truncated record (12 of 90 bytes) at end of file', 'source': 'd', 'count': 1,
     'offset': 9},
    {'kind': 'point', 'reason': "unsupported plugin 'pr_curves'", 'source': 'e', 'count': 5},
    {'kind': 'point', 'reason': 'duplicate step: superseded by a later event with the same step', 'source': 'f',
     'count': 30, 'detail': 'loss {}'},
    {'kind': 'run', 'reason': 'run could not be written: OSError: disk full', 'source': 'g', 'count': 300},
    {'kind': 'file', 'reason': 'empty event file', 'source': 'h', 'count': 1},
]

GOLDEN = """\
runferry report
  runs written                6
  runs failed                 1
  contexts                    8
  files read                  8
  files skipped               1
  files ignored               2
  records read            1,234
  records skipped             2
  points read            12,345
  points written         12,000
  points skipped            345

  points by kind           read       written       skipped
    metric               12,000        11,690           310
    image                    30            30             0
    distribution              3             3             0
    hparams                   0             2            -2
    zebra                     5             5             0
    (other)                 307           270            37

  skipped by reason                                                              count
    run could not be written                                        1 run (300 points)
    duplicate step: superseded by a later event with the same step           30 points
    unsupported plugin 'pr_curves'                                            5 points
    truncated record at end of file                                          2 records
    unorganized event file                                                     2 files
    empty event file                                                            1 file

  elapsed                  12.5 s
  throughput                960 points/s (points written / elapsed)
  every skipped item, with its reason, is listed in {skipped}
View the result: aim up --repo /data/aim
"""


@pytest.fixture
def letters_file(tmp_path):
    path = tmp_path / 'skipped.jsonl'
    path.write_text(''.join(json.dumps(letter) + '\n' for letter in LETTERS))
    return str(path)


def test_print_report_on_fixed_counters_is_this_table(letters_file):
    out = io.StringIO()
    aim_report(COUNTERS, elapsed=12.5, repo='/data/aim', skipped_path=letters_file, out=out)
    assert out.getvalue() == GOLDEN.replace('{skipped}', letters_file)


def test_parse_report_reads_back_the_fixed_table(letters_file):
    out = io.StringIO()
    aim_report(COUNTERS, elapsed=12.5, repo='/data/aim', skipped_path=letters_file, out=out)
    report = parse_report(out.getvalue())
    assert report['counts']['runs written'] == 6 and report['counts']['contexts'] == 8
    assert report['counts']['points read'] == 12_345
    assert report['kinds']['metric'] == (12_000, 11_690, 310)
    assert report['kinds']['(other)'] == (307, 270, 37)
    assert report['reasons'] == {
        'run could not be written': '1 run (300 points)',
        'duplicate step: superseded by a later event with the same step': '30 points',
        "unsupported plugin 'pr_curves'": '5 points', 'truncated record at end of file': '2 records',
        'unorganized event file': '2 files', 'empty event file': '1 file'}
    assert (report['elapsed'], report['throughput'], report['aim_up']) == (12.5, 960, '/data/aim')



def test_retries_are_a_row_when_there_were_any(letters_file):
    """Transient failures waited out (``connectors.retry``) are counted; the row appears only then."""
    def table(counters):
        out = io.StringIO()
        aim_report(counters, elapsed=12.5, repo='/data/aim', skipped_path=letters_file, out=out)
        return out.getvalue()

    with_retries = table({**COUNTERS, 'retries': 4})
    assert '\n  retries                     4\n' in with_retries
    assert with_retries.index('points skipped') < with_retries.index('retries') < with_retries.index('points by kind')
    assert with_retries.replace('  retries                     4\n', '') == table(COUNTERS)
    assert '  retries ' not in table(COUNTERS)

def test_report_rows_keep_the_layout_other_scripts_grep():
    """``runs written`` + 16 spaces + the number, as before (test_remote_aim/test_cloud_sources grep it);
    a longer label still ends its number in the same column."""
    out = io.StringIO()
    aim_report({'runs_written': 8, 'artifacts_read': 3, 'artifacts_skipped': 12}, elapsed=0.0, repo='aim://h:1',
                 skipped_path=None, out=out)
    text = out.getvalue()
    assert 'runs written                8' in text and 'runs failed                 0' in text
    assert '  artifacts read              3\n  artifacts skipped          12\n' in text
    assert 'throughput                  0 points/s' in text  # no division by zero
    assert 'aim up' not in text  # a remote repo is viewed in the server's own UI
    assert 'skipped' not in text.split('throughput')[1]  # no dead-letter file given: nothing claimed


def test_nothing_skipped_says_so(tmp_path):
    empty = tmp_path / 'skipped.jsonl'
    empty.write_text('')
    out = io.StringIO()
    aim_report({'runs_written': 1, 'points_read': 5, 'points_written': 5}, elapsed=1.0, repo='r',
                 skipped_path=str(empty), out=out)
    assert '  nothing was skipped\n' in out.getvalue() and 'skipped by reason' not in out.getvalue()


@pytest.mark.parametrize('reason, label', [
    ('truncated record (35 of 42 bytes) at end of file', 'truncated record at end of file'),
    ('truncated record header (3 of 12 bytes) at end of file', 'truncated record header at end of file'),
    ('run could not be written: OSError: [Errno 28] No space left', 'run could not be written'),
    ('run could not be read: MlflowException: RESOURCE_DOES_NOT_EXIST: run x', 'run could not be read'),
    ('record is not an Event proto: Error parsing message', 'record is not an Event proto'),
    ('file cannot be opened: [Errno 13] Permission denied', 'file cannot be opened'),
    ("unsupported plugin 'pr_curves'", "unsupported plugin 'pr_curves'"),
    ('duplicate step: superseded by a later point with the same step',
     'duplicate step: superseded by a later point with the same step'),
    ('artifact larger than 67108864 bytes (99999999)', 'artifact larger than 67108864 bytes'),
    ('record length fails its CRC; scanning for the next record',
     'record length fails its CRC; scanning for the next record'),
])
def test_reason_label_groups_like_reasons(reason, label):
    assert reason_label(reason) == label


def test_skipped_by_reason_without_a_file():
    assert skipped_by_reason(None) is None
    assert skipped_by_reason('/nonexistent/skipped.jsonl') is None


def test_points_by_kind_other_row_only_when_totals_exceed_kinds():
    assert points_by_kind({'points_read': 4, 'points_written': 4, 'points_read:metric': 4,
                           'points_written:metric': 4}) == [('metric', 4, 4, 0)]
    assert points_by_kind({'points_read': 4, 'points_written': 4}) == []


def test_print_tree_falls_back_to_ascii():
    class Latin1(io.StringIO):
        encoding = 'latin-1'

    out = Latin1()
    print_tree('title', [('a', [('a1', []), ('a2', [])]), ('b', [('b1', [])])], out)
    assert out.getvalue() == 'title\n|-- a\n|   |-- a1\n|   `-- a2\n`-- b\n    `-- b1\n'
    out = io.StringIO()
    print_tree('title', [('a', [('a1', []), ('a2', [])]), ('b', [('b1', [])])], out)
    assert out.getvalue() == 'title\n├── a\n│   ├── a1\n│   └── a2\n└── b\n    └── b1\n'


# ------------------------------------------------------------------------- tf_to_aim on a known logdir

def _only_event_file(directory):
    (name,) = [n for n in os.listdir(directory) if 'tfevents' in n]
    return os.path.join(directory, name)


def _records(path):
    """Records of an event file as TensorBoard's own loader reads them (a truncated last record is the
    end of the file to it), and the events' summary values."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2

    payloads = list(RawEventFileLoader(path).Load())
    values = [v for p in payloads for v in event_pb2.Event.FromString(p).summary.value]
    return len(payloads), values


@pytest.fixture(scope='module')
def known_logdir(tmp_path_factory):
    """The converter guide's logdir (3 runs, 5 contexts, 2 unorganized files), a run with every plugin
    TF2 writes (and a custom one that is skipped), a run whose last record is cut, a run that logs one
    step twice, and an empty event file; with what each writer wrote."""
    from tensorboardX import SummaryWriter

    from samples.tensorboard_logs import write_seed_logdir, write_tbx
    from samples.tensorboard_plugins import write_tf2_plugins

    root = str(tmp_path_factory.mktemp('report') / 'logs')
    seed = write_seed_logdir(root, steps=10)
    plugins = write_tf2_plugins(os.path.join(root, 'plugins'), steps=3)
    cut = write_tbx(os.path.join(root, 'cut'), ('loss',), 10)
    path = _only_event_file(os.path.join(root, 'cut'))
    with open(path, 'rb') as stream:
        data = stream.read()
    with open(path, 'wb') as stream:
        stream.write(data[:-7])  # a job killed mid-write: its last record (step 9) is cut
    writer = SummaryWriter(os.path.join(root, 'twice'))
    for i, step in enumerate((0, 1, 2, 3, 2)):  # step 2 again: the later point wins, the earlier is reported
        writer.add_scalar('loss', float(i), step, walltime=1_700_000_000.0 + i)
    writer.close()
    os.makedirs(os.path.join(root, 'empty'))
    open(os.path.join(root, 'empty', 'events.out.tfevents.1.host'), 'wb').close()
    return root, seed, plugins, cut


@pytest.fixture(scope='module')
def tf_report(known_logdir, tmp_path_factory):
    from pipelines import tf_to_aim

    root = known_logdir[0]
    out = tmp_path_factory.mktemp('report-out')
    repo, skipped, report = str(out / 'aim'), str(out / 'skipped.jsonl'), str(out / 'report.json')
    with job_log() as logged:
        status, text, wall = run_printing(tf_to_aim.run, ['--logdir', root, '--repo', repo, '--skipped', skipped,
                                                          '--report', report])
    assert status == 0
    with open(report) as document:
        return parse_report(text), repo, skipped, wall, (text, logged.getvalue(), json.load(document))


@pytest.mark.slow
def test_tf_report_counts_what_the_logdir_holds(known_logdir, tf_report):
    root, seed, plugins, cut = known_logdir
    report, repo, skipped, wall, _ = tf_report
    counts, kinds = report['counts'], dict(report['kinds'])

    # runs: the 3 of the guide's hierarchy, plugins, cut, twice (the empty file makes no run)
    assert (counts['runs written'], counts['runs failed']) == (6, 0)
    # files: 5 in the guide's runs + 3; the empty one skipped; the 2 unorganized ones ignored
    assert (counts['files read'], counts['files skipped'], counts['files ignored']) == (8, 1, 2)
    # records: as TensorBoard's own loader reads each converted file; the cut last record skipped
    converted = [_only_event_file(os.path.join(root, run, context or ''))
                 for run, context in [*seed, ('plugins', None), ('cut', None), ('twice', None)]]
    assert counts['records read'] == sum(_records(path)[0] for path in converted)
    assert counts['records skipped'] == 1

    # points by kind: what the writers wrote; 'cut' lost step 9, 'twice' wrote step 2 twice
    seed_points = sum(len(points) for points in seed.values())
    assert len(cut) == 10
    metric_read = seed_points + 9 + 5
    assert kinds.pop('metric') == (metric_read, metric_read - 1, 1)
    for kind in ('image', 'distribution', 'text', 'audio'):
        written = sum(1 for k, _, _ in plugins.points if k == kind)
        assert kinds.pop(kind) == (written, written, 0), kind
    assert kinds.pop('hparams') == kinds.pop('hparams_config') == (1, 1, 0)  # run attributes
    custom = plugins.skipped['my_custom_plugin']
    assert kinds.pop('(other)') == (custom, 0, custom)  # a plugin with no Aim object
    assert kinds == {}
    total_read = metric_read + len(plugins.points) + 2 + custom
    assert (counts['points read'], counts['points written'], counts['points skipped']) == \
        (total_read, total_read - 1 - custom, 1 + custom)

    assert report['reasons'] == {
        "unsupported plugin 'my_custom_plugin'": f'{custom} points',
        'unorganized event file': '2 files',
        'duplicate step: superseded by a later event with the same step': '1 point',
        'empty event file': '1 file',
        'truncated record at end of file': '1 record',
    }
    assert report['skipped_path'] == skipped
    assert sum(1 for _ in open(skipped)) == 6  # one dead letter per file and reason

    assert 0 < report['elapsed'] <= wall + 0.05
    rate = counts['points written'] / report['elapsed']
    assert abs(report['throughput'] - rate) <= 0.5 + rate * 0.05 / report['elapsed']  # elapsed is rounded
    assert report['aim_up'] == repo


@pytest.mark.slow
def test_tf_job_writes_the_report_the_launcher_prints(tf_report):
    """Several counters are not zero (skipped files, records, points; ignored files; contexts): the job's
    own report has every one of them, as the launcher printed them from Beam's metrics."""
    printed, logged, document = tf_report[4]
    counters = document['counters']
    assert all(counters[name] for name in ('files_skipped', 'files_ignored', 'records_skipped', 'points_skipped',
                                           'contexts_written', 'points_written:image', 'points_read:metric'))
    check_job_report(printed, logged, document, tf_report[1])


@pytest.mark.slow
def test_tf_report_counts_contexts(tf_report):
    # 5 in the guide's runs (run_2: none, train, validate) + plugins + cut + twice
    assert tf_report[0]['counts']['contexts'] == 8


@pytest.mark.slow
def test_tf_report_runs_and_points_are_in_the_repo(known_logdir, tf_report):
    """The report's numbers are the repo's: read back through the Aim SDK."""
    from aim import Repo

    report, repo = tf_report[0], tf_report[1]
    runs = list(Repo.from_path(repo).iter_runs())
    assert len(runs) == report['counts']['runs written']
    metric_points = sum(len(metric.data.items_list()[0]) for run in runs for metric in run.metrics())
    assert metric_points == report['kinds']['metric'][1]
    contexts = {(run.hash, json.dumps(metric.context.to_dict(), sort_keys=True))
                for run in runs for metric in run.metrics()}
    assert len(contexts) == 7  # 8 contexts, less the plugins run's, which holds no metric


# ---------------------------------------------------------------------- mlflow_to_aim on a known store

@pytest.fixture(scope='module')
def known_store():
    """A SQLite store: experiment 'vision' with a rich run (every artifact kind, two Aim cannot take, a
    step logged twice) and two small runs; experiment 'audio' with one small run. Real MLflow client
    calls; returns the URI, the client, the experiment ids and what each run holds."""
    from mlflow import MlflowClient

    from samples.mlflow_store import START_MS, log_many_runs, log_rich_run, scratch_dir

    with scratch_dir() as root:
        uri = f'sqlite:///{root}/mlflow.db'
        client = MlflowClient(uri)
        vision = client.create_experiment('vision', artifact_location=f'file://{root}/artifacts-vision')
        audio = client.create_experiment('audio', artifact_location=f'file://{root}/artifacts-audio')
        expected = log_rich_run(client, vision, 'rich', salt=1, steps=10, start_ms=START_MS - 60_000)  # 1st
        expected.update(log_many_runs(client, vision, 2, prefix='small'))
        expected.update(log_many_runs(client, audio, 1, prefix='clip'))
        same_millisecond(uri)
        yield uri, client, {'vision': vision, 'audio': audio}, expected


def same_millisecond(uri):
    """Every experiment of the store created in the same millisecond, as a fast script makes them: an
    order that rests on creation times would be MLflow's tie-break, not runferry's."""
    import sqlite3

    with sqlite3.connect(uri[len('sqlite:///'):]) as db:
        db.execute('update experiments set creation_time = 1700000000000, last_update_time = 1700000000000')


def _mlflow_source_counts(client, expected):
    """What the store holds, asked of MLflow directly: metric points as logged (duplicates included),
    artifact files by the Aim kind their extension names (None: no Aim object)."""
    from connectors.mlflow_source import artifact_kind

    points, files = 0, {}
    for run_id in expected:
        for key in client.get_run(run_id).data.metrics:
            points += len(client.get_metric_history(run_id, key))
        pending = [None]
        while pending:
            for info in client.list_artifacts(run_id, pending.pop()):
                if info.is_dir:
                    pending.append(info.path)
                else:
                    files[(run_id, info.path)] = artifact_kind(info.path)
    return points, files


@pytest.mark.slow
def test_mlflow_report_counts_what_the_store_holds(known_store, tmp_path):
    from pipelines import mlflow_to_aim

    uri, client, _, expected = known_store
    repo, skipped, written = str(tmp_path / 'aim'), str(tmp_path / 'skipped.jsonl'), tmp_path / 'report.json'
    with job_log() as logged:
        status, text, wall = run_printing(mlflow_to_aim.run, ['--tracking-uri', uri, '--repo', repo, '--skipped',
                                                              skipped, '--report', str(written)])
    assert status == 0
    check_job_report(text, logged.getvalue(), json.loads(written.read_text()), repo)  # the read side's counts too
    report = parse_report(text)
    counts, kinds = report['counts'], dict(report['kinds'])
    runs = len(expected)
    logged_points, files = _mlflow_source_counts(client, expected)
    converted = {(run_id, path): kind for run_id, want in expected.items()
                 for path, (kind, _) in want['artifacts'].items()}
    metric_points = sum(len(points) for want in expected.values() for points in want['metrics'].values())
    duplicates = logged_points - metric_points
    assert duplicates == 1  # 'loss' step 5 of the rich run, logged twice

    assert (counts['runs read'], counts['runs skipped'], counts['runs written'], counts['runs failed']) == \
        (runs, 0, runs, 0)
    assert counts['contexts'] == runs  # MLflow runs have one context: the empty one
    assert (counts['artifacts read'], counts['artifacts skipped']) == (len(files), len(files) - len(converted))
    assert kinds.pop('metric') == (logged_points, metric_points, duplicates)
    for kind in ('image', 'text', 'audio'):
        read = sum(1 for k in files.values() if k == kind)
        written = sum(1 for k in converted.values() if k == kind)
        assert kinds.pop(kind) == (read, written, read - written), kind
    no_kind = sum(1 for k in files.values() if k is None)
    assert kinds.pop('(other)') == (no_kind, 0, no_kind)
    assert kinds == {}
    assert (counts['points read'], counts['points written'], counts['points skipped']) == \
        (logged_points + len(files), metric_points + len(converted), duplicates + len(files) - len(converted))

    skipped_paths = sorted(path for want in expected.values() for path in want['skipped_artifacts'])
    reasons = dict(report['reasons'])
    assert reasons.pop('duplicate step: superseded by a later point with the same step') == '1 point'
    assert reasons.pop('artifact type has no Aim object') == '1 artifact'  # model/weights.bin
    assert reasons.pop('tag longer than the 50 characters Aim allows a tag name') == '1 tag'  # summary=…
    user_tags = sum(len(want['tags']) for want in expected.values())
    assert (counts['tags read'], counts['tags skipped']) == \
        (user_tags, user_tags - sum(len(want['aim_tags']) for want in expected.values()))
    assert skipped_paths == ['model/weights.bin']  # the SVG is rendered to an image
    assert reasons == {}

    assert 0 < report['elapsed'] <= wall + 0.05
    rate = counts['points written'] / report['elapsed']
    assert abs(report['throughput'] - rate) <= 0.5 + rate * 0.05 / report['elapsed']
    assert report['aim_up'] == repo


# ------------------------------------------------------------------------------- mlflow_to_aim --dry-run

def _tree_lines(text):
    """The dry run's tree: (depth, line without its branches) for each line below the two title lines."""
    rows = []
    for line in text.splitlines()[2:]:
        match = re.match(r'((?:│   |    )*)(?:├── |└── )(.*)', line)
        assert match, f'not a tree line: {line!r}'
        rows.append((len(match.group(1)) // 4, match.group(2)))
    return rows


@pytest.mark.slow
def test_mlflow_dry_run_prints_a_tree_and_writes_nothing(known_store, tmp_path):
    from pipelines import mlflow_to_aim

    uri, client, experiments, expected = known_store
    repo, skipped = tmp_path / 'aim', tmp_path / 'skipped.jsonl'
    status, text, _ = run_printing(mlflow_to_aim.run, ['--tracking-uri', uri, '--repo', str(repo), '--skipped',
                                                       str(skipped), '--dry-run'])
    assert status == 0
    assert not repo.exists() and not skipped.exists() and os.listdir(tmp_path) == []

    _, files = _mlflow_source_counts(client, expected)
    title, totals = text.splitlines()[:2]
    assert title == f'Plan for {uri} → Aim repo {repo} (dry run: nothing is written)'
    metrics = sum(len(w['metrics']) for w in expected.values())
    params = sum(len(w['params']) for w in expected.values())
    no_kind = sum(1 for kind in files.values() if kind is None)
    assert totals == (f'3 experiments, {len(expected)} runs: {metrics} metrics, {params} params, '
                      f'{len(files)} artifacts ({no_kind} to skip)')

    want_tree = []
    for name in ('audio', 'Default', 'vision'):  # by name, whatever MLflow's order for equal creation times
        experiment_id = experiments.get(name, '0')
        runs = sorted((w for w in expected.values() if w['experiment'] == name), key=lambda w: w['start_time'])
        want_tree.append((0, f"experiment '{name}' [id {experiment_id}]: {len(runs)} run{'s' * (len(runs) != 1)}"))
        for want in runs:
            run_files = {path: kind for (run_id, path), kind in files.items() if run_id == want['run_id']}
            line = (f"run '{want['name']}' [{want['status']}, id {want['run_id']}]: "
                    f"{len(want['metrics'])} metric{'s' * (len(want['metrics']) != 1)}, {len(want['params'])} params, "
                    f"{len(want['tags'])} tag{'s' * (len(want['tags']) != 1)}, {len(run_files)} artifacts")
            if run_files:
                count = {k: sum(1 for v in run_files.values() if v == k) for k in ('image', 'text', 'audio', None)}
                line += (f' ({count["image"]} images, {count["text"]} texts, {count["audio"]} audio clip, '
                         f'{count[None]} skipped)')
            want_tree.append((1, line))
            want_tree.append((2, f"Aim tags: {', '.join(want['aim_tags'])}"))
            if 'summary' in want['tags']:
                want_tree.append((2, "tag 'summary' stays an attribute only: tag longer than the 50 characters "
                                     f"Aim allows a tag name ({len('summary=' + want['tags']['summary'])})"))
            want_tree += [(2, f'skip {path}: no Aim object for this file type')
                          for path, kind in sorted(run_files.items()) if kind is None]
    assert _tree_lines(text) == want_tree


@pytest.mark.slow
def test_mlflow_dry_run_of_one_experiment(known_store, tmp_path):
    from pipelines import mlflow_to_aim

    uri, _, experiments, expected = known_store
    status, text, _ = run_printing(mlflow_to_aim.run, ['--tracking-uri', uri, '--repo', str(tmp_path / 'aim'),
                                                       '--experiment', experiments['audio'], '--dry-run'])
    assert status == 0 and os.listdir(tmp_path) == []
    (run,) = [w for w in expected.values() if w['experiment'] == 'audio']
    assert text.splitlines()[1] == '1 experiment, 1 run: 1 metric, 2 params, 0 artifacts (0 to skip)'
    assert _tree_lines(text) == [
        (0, f"experiment 'audio' [id {experiments['audio']}]: 1 run"),
        (1, f"run '{run['name']}' [RUNNING, id {run['run_id']}]: 1 metric, 2 params, 1 tag, 0 artifacts"),
        (2, 'Aim tags: shard=0')]


def test_tf_plan_is_a_tree():
    from connectors.event_files import EventFileSource
    from pipelines.sources.tensorboard import print_tensorboard_plan
    from transforms.classify import classify

    listing = ['run_1/events.out.tfevents.1', 'g/run_2/events.out.tfevents.2', 'g/run_2/train/events.out.tfevents.3',
               'g/run_2/train/events.out.tfevents.4', 'events.out.tfevents.5']
    out = io.StringIO()
    print_tensorboard_plan(EventFileSource('/data/logs'), classify(listing), 'sweep', out)
    assert out.getvalue() == """\
Plan for /data/logs → Aim experiment 'sweep' (dry run: nothing is written)
2 runs, 3 contexts, 4 event files, 1 ignored
├── run g/run_2
│   ├── no context (files in the run directory): 1 file
│   │   └── g/run_2/events.out.tfevents.2
│   └── context train: 2 files
│       ├── g/run_2/train/events.out.tfevents.3
│       └── g/run_2/train/events.out.tfevents.4
├── run run_1
│   └── no context (files in the run directory): 1 file
│       └── run_1/events.out.tfevents.1
└── ignored (unorganized event files, not in a run directory): 1
    └── events.out.tfevents.5
"""


@pytest.mark.slow
def test_mlflow_dry_run_without_resvg_lists_svg_as_skipped(known_store, tmp_path, monkeypatch):
    import sys

    from pipelines import mlflow_to_aim

    uri, _, experiments, expected = known_store
    monkeypatch.setitem(sys.modules, 'resvg_py', None)  # as if the svg extra were not installed
    status, text, _ = run_printing(mlflow_to_aim.run, ['--tracking-uri', uri, '--repo', str(tmp_path / 'aim'),
                                                       '--experiment', 'vision', '--dry-run'])
    assert status == 0
    rich = next(w for w in expected.values() if w['name'] == 'rich')
    lines = dict((line, depth) for depth, line in _tree_lines(text))
    assert any(line.startswith(f"run 'rich' [FINISHED, id {rich['run_id']}]: ") and
               line.endswith('8 artifacts (2 images, 3 texts, 1 audio clip, 2 skipped)') for line in lines), text
    assert lines['skip icons/logo.svg: rendering an SVG needs runferry[svg] (resvg-py)'] == 2
