"""connectors.redact: secrets masked in URIs, free text, storage options, log records and streams."""
from __future__ import annotations

import io
import logging

import pytest

from connectors import redact
from connectors.redact import (MASK, MaskingFilter, MaskingStream, is_secret_name, mask_options, mask_text,
                               mask_uri, secrets_of_options, secrets_of_uri)
from connectors.retry import one_line


@pytest.mark.parametrize('uri,shown', [
    ('http://alice:S3CRETpw@host/', 'http://alice:***@host/'),
    ('https://alice:S3CRETpw@mlflow.example.com:8443/prefix', 'https://alice:***@mlflow.example.com:8443/prefix'),
    ('postgresql://user:password@db.internal/mlflow', 'postgresql://user:***@db.internal/mlflow'),
    ('postgresql+psycopg2://u:p%40ss@10.0.0.3:5432/mlflow?sslmode=require&sslpassword=k3y',
     'postgresql+psycopg2://u:***@10.0.0.3:5432/mlflow?sslmode=require&sslpassword=***'),
    ('http://u:p@ss@host/x', 'http://u:***@host/x'),  # an unencoded @ in the password
    ('https://host/runs?token=abc123&page=2', 'https://host/runs?token=***&page=2'),
    ('https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ff00',
     'https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=***&X-Amz-Credential=***&X-Amz-Signature=***'),
    ('https://acct.blob.core.windows.net/c?sv=2024&sig=Zm9v%3D&se=2030',
     'https://acct.blob.core.windows.net/c?sv=2024&sig=***&se=2030'),
    ('https://h/?access_token=t1;api_key=k2;password=p3;secret=s4;key=k5',
     'https://h/?access_token=***;api_key=***;password=***;secret=***;key=***'),
    ('https://h/cb#access_token=t1&state=ok', 'https://h/cb#access_token=***&state=ok'),
    ('ftp://user@host/path', 'ftp://user@host/path'),  # a user without a password is kept
])
def test_mask_uri_masks_passwords_and_secret_parameters(uri, shown):
    assert mask_uri(uri) == shown


@pytest.mark.parametrize('uri', ['s3://bucket/logs/run', 'gs://b/x', 'http://127.0.0.1:5000/', 'aim://10.0.0.5:53800',
                                 'sqlite:////mnt/mlflow.db', 'file:///mnt/mlruns', '/mnt/logs', 'logs',
                                 'https://h/x?page=2&sort=asc', '', None])
def test_mask_uri_keeps_uris_without_secrets_as_they_are(uri):
    assert mask_uri(uri) == uri


@pytest.mark.parametrize('name', ['token', 'access_token', 'refresh_token', 'sas_token', 'password', 'passwd',
                                  'secret', 'client_secret', 'key', 'api_key', 'apikey', 'account_key', 'sig',
                                  'signature', 'X-Amz-Signature', 'x-amz-security-token', 'X-Goog-Credential',
                                  'Authorization', 'aws_secret_access_key', 'connection_string'])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize('name', ['anon', 'endpoint_url', 'region_name', 'page', 'sslmode', 'use_ssl', 'version_aware'])
def test_names_that_are_not_secret(name):
    assert not is_secret_name(name)


def test_mask_text_masks_every_uri_in_a_library_error():
    error = ('cannot list experiments at http://alice:S3CRETpw@127.0.0.1:1/: MLflow http://alice:S3CRETpw@127.0.0.1:1/ '
             'search_experiments: MlflowException: API request to http://alice:S3CRETpw@127.0.0.1:1/api/2.0/mlflow/'
             'experiments/search failed with exception HTTPConnectionPool(host=\'127.0.0.1\', port=1)')
    masked = mask_text(error)
    assert 'S3CRETpw' not in masked and masked.count('http://alice:***@127.0.0.1:1/') == 3
    assert masked.endswith("HTTPConnectionPool(host='127.0.0.1', port=1)")


@pytest.mark.parametrize('text,shown', [
    ('host=db port=5432 user=u password=hunter2 dbname=m', 'host=db port=5432 user=u password=*** dbname=m'),
    ("S3FileSystem(key='AKIA1234', secret='wJalr/K7', anon=False)",
     "S3FileSystem(key='***', secret='***', anon=False)"),
    ('{"key": "AKIA1234", "secret": "wJalr K7", "anon": true}', '{"key": "***", "secret": "***", "anon": true}'),
    ("{'token': 'ya29.a0', 'project': 'p'}", "{'token': '***', 'project': 'p'}"),
])
def test_mask_text_masks_secret_pairs(text, shown):
    assert mask_text(text) == shown


@pytest.mark.parametrize('text', ['exit code: 1', 'runs written                5', 'metric key: loss',
                                  'run group_1/run_2 [FINISHED, id abc]: 3 metrics', 'lr=0.1 batch=32'])
def test_mask_text_leaves_ordinary_text_alone(text):
    assert mask_text(text) == text


def test_literal_secrets_are_masked_in_any_shape():
    secrets = secrets_of_uri('http://alice:p%2Fw0rd!@host/?token=tok/en+1')
    assert {'p%2Fw0rd!', 'p/w0rd!', 'tok/en+1', 'tok%2Fen%2B1'} <= secrets
    text = 'auth failed for alice (password p/w0rd!); retried with tok%2Fen%2B1'
    assert mask_text(text, secrets) == f'auth failed for alice (password {MASK}); retried with {MASK}'
    assert mask_text('a short pw: ab', {'ab'}) == 'a short pw: ab'  # too short to search for in prose


def test_remembered_secrets_are_masked_everywhere(monkeypatch):
    monkeypatch.setattr(redact, '_remembered', set())
    redact.remember(secrets_of_options({'client_kwargs': {'aws_secret_access_key': 'wJalrXUtnFEMI'}}))
    assert mask_text('Signature mismatch for wJalrXUtnFEMI') == 'Signature mismatch for ***'


def test_storage_options_secrets_found_and_masked_at_any_depth():
    options = {'key': 'AKIAKEY', 'secret': 'SECRETVAL', 'anon': False, 'token': None,
               'client_kwargs': {'endpoint_url': 'http://u:pw9@minio:9000', 'region_name': 'eu'},
               'headers': [{'Authorization': 'Bearer abc.def'}], 'account_key': 12345}
    assert secrets_of_options(options) >= {'AKIAKEY', 'SECRETVAL', 'pw9', 'Bearer abc.def', '12345'}
    assert 'eu' not in secrets_of_options(options) and 'minio' not in secrets_of_options(options)
    assert mask_options(options) == {
        'key': MASK, 'secret': MASK, 'anon': False, 'token': None,
        'client_kwargs': {'endpoint_url': 'http://u:***@minio:9000', 'region_name': 'eu'},
        'headers': [{'Authorization': MASK}], 'account_key': MASK}


def test_an_error_line_is_masked_before_it_is_cut():
    error = OSError('x' * 380 + ' http://alice:S3CRETpassword@host/path')
    line = one_line(error)
    assert 'S3CR' not in line and len(line) <= 400


def test_log_records_are_masked_message_arguments_and_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    logger = logging.getLogger('test_redact.records')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('retrying %s: %s', 'http://alice:S3CRETpw@host/', 'token=abc123')
        try:
            raise RuntimeError('cannot open postgresql://u:PGpass99@db/m')
        except RuntimeError:
            logger.exception('failed')
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert 'retrying http://alice:***@host/: token=***' in text
    assert 'postgresql://u:***@db/m' in text and 'Traceback' in text
    assert 'S3CRETpw' not in text and 'PGpass99' not in text and 'abc123' not in text


def test_masking_stream():
    out = io.StringIO()
    stream = MaskingStream(out)
    print('Plan for http://alice:S3CRETpw@host/logs', file=stream)
    stream.flush()
    assert out.getvalue() == 'Plan for http://alice:***@host/logs\n'
    assert stream.getvalue() == out.getvalue()  # everything else is the stream underneath
