"""One contract, two adapters: everything in the first part runs against local files and moto S3; then what
only one adapter can show (file modes, atomic replace, SSE, the prefix) and the factory."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.sessions import (
    MAX_SESSION_BYTES,
    SessionSettings,
    SessionStore,
    SessionTooLarge,
    build_session_store,
    validate_key,
)
from shared.sessions import port as session_port
from shared.sessions.local import LocalSessionStore
from shared.sessions.s3 import S3SessionStore

REGION = "us-east-1"
BUCKET = "orch-sessions-test"
KEY = "po/usr_ab12cd34"
ARCHIVE = bytes(range(256)) * 64 + b"\x1f\x8b\x00\r\n\x00"  # every byte value, CR/LF and NULs included


def _s3_client() -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def s3_client() -> Iterator[Any]:
    with mock_aws():
        client = _s3_client()
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "local":
        yield LocalSessionStore(tmp_path / "sessions")
    else:
        yield S3SessionStore(BUCKET, client=request.getfixturevalue("s3_client"))


@pytest.fixture
def local(tmp_path: Path) -> LocalSessionStore:
    return LocalSessionStore(tmp_path / "home" / "sessions")


# -- the contract ------------------------------------------------------------------------------


def test_save_then_load_round_trips_binary_data(store: SessionStore) -> None:
    assert isinstance(store, SessionStore)
    store.save(KEY, ARCHIVE)
    assert store.load(KEY) == ARCHIVE


def test_load_of_a_missing_key_is_none(store: SessionStore) -> None:
    assert store.load(KEY) is None
    assert store.load("po/nobody/deeper/still") is None


def test_an_empty_archive_is_stored_as_empty_not_as_missing(store: SessionStore) -> None:
    store.save(KEY, b"")
    assert store.load(KEY) == b""


def test_save_overwrites(store: SessionStore) -> None:
    store.save(KEY, ARCHIVE)
    store.save(KEY, b"second")
    assert store.load(KEY) == b"second"


def test_delete_forgets_and_is_idempotent(store: SessionStore) -> None:
    store.save(KEY, ARCHIVE)
    store.delete(KEY)
    assert store.load(KEY) is None
    store.delete(KEY)  # missing: not an error
    store.delete("po/never-saved")


def test_keys_are_isolated(store: SessionStore) -> None:
    # given keys that share a prefix, a segment or a directory
    store.save("po/a", b"a")
    store.save("po/ab", b"ab")
    store.save("po", b"root")
    store.save("po/a/b", b"nested")

    # then each reads back its own archive, and deleting one leaves the others
    assert [store.load(k) for k in ("po/a", "po/ab", "po", "po/a/b")] == [b"a", b"ab", b"root", b"nested"]
    store.delete("po/a")
    assert [store.load(k) for k in ("po/a", "po/ab", "po", "po/a/b")] == [None, b"ab", b"root", b"nested"]


def test_keys_look_like_user_ids(store: SessionStore) -> None:
    for key in ("po/usr_ab12", "po/9f1c2d3e-4b5a-6789-abcd-ef0123456789", "po/v1.2", "a/b/c/d/e"):
        store.save(key, key.encode())
        assert store.load(key) == key.encode(), key


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("../x", "'..'"),
        ("po/../../etc/passwd", "'..'"),
        ("/abs", "leading '/'"),
        ("a//b", "empty segment"),
        ("po/", "empty segment"),
        ("a" * 101, "too long"),
        ("po/" + "x" * 101, "too long"),
        ("a/b/c/d/e/f", "6 segments"),
        (".hidden", "invalid characters"),
        ("po/-x", "invalid characters"),
        ("po/a b", "invalid characters"),
        ("po\\x", "invalid characters"),
        ("po/é", "invalid characters"),
    ],
)
def test_bad_keys_are_refused_by_every_operation(store: SessionStore, key: str, problem: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.load(key),
        lambda: store.save(key, b"x"),
        lambda: store.delete(key),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match="session key") as caught:
            operation()
        assert problem in str(caught.value)
        assert not isinstance(caught.value, SessionTooLarge)


def test_validate_key_returns_a_good_key_unchanged() -> None:
    longest = "/".join(["a" * 100] * 5)
    assert validate_key(longest) == longest
    assert validate_key(KEY) == KEY
    with pytest.raises(TypeError):
        validate_key(b"po/x")  # type: ignore[arg-type]


def test_an_oversized_archive_is_refused_and_nothing_is_stored(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_port, "MAX_SESSION_BYTES", 10)
    store.save(KEY, b"0123456789")  # exactly the limit is fine
    with pytest.raises(SessionTooLarge) as caught:
        store.save(KEY, b"0123456789a")
    assert isinstance(caught.value, ValueError)
    assert (caught.value.key, caught.value.size, caught.value.limit) == (KEY, 11, 10)
    assert KEY in str(caught.value) and "11 bytes" in str(caught.value) and "10 bytes" in str(caught.value)
    assert store.load(KEY) == b"0123456789"  # the previous archive is untouched


def test_the_real_limit_is_64_mib() -> None:
    assert MAX_SESSION_BYTES == session_port.MAX_SESSION_BYTES == 64 * 1024 * 1024


def test_only_bytes_are_stored(store: SessionStore) -> None:
    with pytest.raises(TypeError, match="bytes"):
        store.save(KEY, "text")  # type: ignore[arg-type]
    assert store.load(KEY) is None


# -- local only --------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_files_are_0600_in_0700_directories(local: LocalSessionStore) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not loosen anything
    try:
        local.save(KEY, ARCHIVE)
    finally:
        os.umask(old_umask)
    path = local.root / "po" / "usr_ab12cd34.tar.gz"
    assert local.path_for(KEY) == path
    assert path.read_bytes() == ARCHIVE
    assert _mode(path) == 0o600
    assert _mode(local.root) == _mode(local.root / "po") == 0o700


def test_local_layout_is_one_file_per_key(local: LocalSessionStore) -> None:
    local.save("po/a", b"a")
    local.save("po", b"root")
    files = sorted(str(p.relative_to(local.root)) for p in local.root.rglob("*") if p.is_file())
    assert files == ["po.tar.gz", "po/a.tar.gz"]  # no temporary file left behind


def test_local_failed_write_keeps_the_old_archive_and_leaves_no_temporary_file(
    local: LocalSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a stored archive
    local.save(KEY, b"old")

    # when the replace step fails
    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        local.save(KEY, b"new")
    monkeypatch.undo()

    # then the old archive is intact and only it is in the directory
    assert local.load(KEY) == b"old"
    assert sorted(p.name for p in local.path_for(KEY).parent.iterdir()) == ["usr_ab12cd34.tar.gz"]


def test_local_failed_first_write_leaves_nothing(
    local: LocalSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="I/O error"):
        local.save(KEY, ARCHIVE)
    monkeypatch.undo()
    assert local.load(KEY) is None
    assert list(local.path_for(KEY).parent.iterdir()) == []


def test_local_root_is_created_on_first_save_only(tmp_path: Path) -> None:
    store = LocalSessionStore(tmp_path / "a" / "b" / "sessions")
    assert store.load(KEY) is None
    store.delete(KEY)
    assert not (tmp_path / "a").exists()  # reading and deleting create nothing
    store.save(KEY, b"x")
    assert store.load(KEY) == b"x"


def test_local_root_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert LocalSessionStore(Path("~/sessions")).root == tmp_path / "sessions"


# -- S3 only -----------------------------------------------------------------------------------


def test_s3_objects_are_encrypted_gzip_under_the_prefix(s3_client: Any) -> None:
    store = S3SessionStore(BUCKET, client=s3_client)
    store.save(KEY, ARCHIVE)

    keys = [entry["Key"] for entry in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["sessions/po/usr_ab12cd34.tar.gz"] == [store.object_key(KEY)]
    head = s3_client.head_object(Bucket=BUCKET, Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/gzip"


def test_s3_prefix_is_normalized_and_separates_stores(s3_client: Any) -> None:
    assert S3SessionStore(BUCKET, prefix="other", client=s3_client).prefix == "other/"
    assert S3SessionStore(BUCKET, prefix="/a/b/", client=s3_client).prefix == "a/b/"
    assert S3SessionStore(BUCKET, prefix="", client=s3_client).object_key("po/x") == "po/x.tar.gz"
    default = S3SessionStore(BUCKET, client=s3_client)
    other = S3SessionStore(BUCKET, prefix="other/", client=s3_client)
    default.save(KEY, b"default")
    assert other.load(KEY) is None
    other.save(KEY, b"other")
    assert default.load(KEY) == b"default"


def test_s3_errors_other_than_a_missing_key_are_raised(s3_client: Any) -> None:
    store = S3SessionStore("no-such-bucket-here", client=s3_client)
    with pytest.raises(s3_client.exceptions.ClientError) as caught:
        store.load(KEY)
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(s3_client.exceptions.ClientError):
        store.save(KEY, b"x")


def test_s3_access_denied_is_not_mistaken_for_no_session(s3_client: Any) -> None:
    # what S3 answers for a missing key to a caller without s3:ListBucket: it must surface, not read as None
    from botocore.exceptions import ClientError

    class DeniedClient:
        exceptions = s3_client.exceptions

        def get_object(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "GetObject")

    with pytest.raises(ClientError, match="AccessDenied"):
        S3SessionStore(BUCKET, client=DeniedClient()).load(KEY)


def test_s3_store_needs_a_bucket_name(s3_client: Any) -> None:
    with pytest.raises(ValueError, match="bucket"):
        S3SessionStore("", client=s3_client)


# -- the factory -------------------------------------------------------------------------------


def test_factory_defaults_to_local_files_under_orch_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    store = build_session_store()
    assert isinstance(store, LocalSessionStore)
    assert store.root == tmp_path / "home" / "sessions"
    store.save(KEY, b"x")
    assert (tmp_path / "home" / "sessions" / "po" / "usr_ab12cd34.tar.gz").read_bytes() == b"x"


def test_factory_honours_orch_session_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCH_SESSION_DIR", str(tmp_path / "elsewhere"))
    store = build_session_store()
    assert isinstance(store, LocalSessionStore) and store.root == tmp_path / "elsewhere"


def test_factory_treats_an_empty_bucket_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SESSION_BUCKET", "")
    assert isinstance(build_session_store(), LocalSessionStore)


def test_factory_picks_s3_when_the_bucket_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_SESSION_BUCKET", BUCKET)
    monkeypatch.setenv("ORCH_SESSION_PREFIX", "agents/")
    monkeypatch.setenv("ORCH_AWS_REGION", "eu-west-1")
    with mock_aws():
        store = build_session_store()
        assert isinstance(store, S3SessionStore)
        assert (store.bucket, store.prefix) == (BUCKET, "agents/")
        assert store.client.meta.region_name == "eu-west-1"
        store.client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        store.save(KEY, ARCHIVE)
        assert store.load(KEY) == ARCHIVE
        assert (
            store.client.list_objects_v2(Bucket=BUCKET)["Contents"][0]["Key"]
            == "agents/po/usr_ab12cd34.tar.gz"
        )


def test_factory_takes_explicit_settings_and_the_endpoint(tmp_path: Path) -> None:
    settings = SessionSettings(
        session_bucket=BUCKET, aws_endpoint_url="http://127.0.0.1:5000", aws_region=REGION
    )
    store = build_session_store(settings)
    assert isinstance(store, S3SessionStore)
    assert store.client.meta.endpoint_url == "http://127.0.0.1:5000"
    assert store.prefix == "sessions/"
    local = build_session_store(SessionSettings(home=tmp_path))
    assert isinstance(local, LocalSessionStore) and local.root == tmp_path / "sessions"


@pytest.mark.parametrize(
    ("field", "value"),
    [("session_bucket", "Not_A_Bucket"), ("session_prefix", "../up/"), ("session_prefix", "no-slash")],
)
def test_settings_refuse_bad_values(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        SessionSettings.model_validate({field: value})
