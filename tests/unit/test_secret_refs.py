"""Secret references, value checks and the Redactor: pure functions, no storage."""

from __future__ import annotations

import json
import threading
from collections import namedtuple

import pytest

from shared.secrets import (
    MASK,
    MAX_VALUE_BYTES,
    InvalidSecretReference,
    Redactor,
    SecretNotFound,
    SecretsError,
    SecretTooLargeError,
    arn_reference,
    is_arn,
    make_reference,
    parse_prefix,
    parse_reference,
)
from shared.secrets.port import check_value
from shared.secrets.refs import MAX_PATH_CHARS, is_under

RDS_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-0f1e2d3c-4b5a-Ab12Cd"

# -- references ------------------------------------------------------------------------------


def test_make_reference_joins_segments() -> None:
    assert make_reference("projects", "p-1", "DATABASE_URL") == "secret://projects/p-1/DATABASE_URL"
    assert make_reference("servers", "srv_2.eu", "ssh_key") == "secret://servers/srv_2.eu/ssh_key"


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (("projects", "a/b", "X"), r"part 1 \('a/b'\) contains '/'"),
        (("projects", "", "X"), r"part 1 \(''\) is empty"),
        (("projects", "..", "X"), r"part 1 \('..'\) is a relative path segment"),
        (("projects", "p1", "DB URL"), r"part 2 \('DB URL'\) may only contain"),
        (("projects", "p1", "naïve"), r"part 2 \('naïve'\) may only contain"),
        ((), "at least one part"),
    ],
)
def test_make_reference_names_the_bad_part(parts: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_reference(*parts)


def test_make_reference_refuses_a_path_beyond_the_limit() -> None:
    with pytest.raises(ValueError, match=f"the limit is {MAX_PATH_CHARS}"):
        make_reference("projects", "p" * MAX_PATH_CHARS, "X")


def test_parse_reference_returns_the_path() -> None:
    assert parse_reference("secret://projects/p1/DATABASE_URL") == "projects/p1/DATABASE_URL"
    assert parse_reference("secret://single") == "single"


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("projects/p1/X", "must start with secret://"),
        ("secrets://projects/p1/X", "must start with secret://"),
        ("SECRET://projects/p1/X", "must start with secret://"),
        ("secret://", "the path is empty"),
        ("secret:///projects", "segment '' is empty"),
        ("secret://projects//X", "segment '' is empty"),
        ("secret://projects/p1/", "segment '' is empty"),
        ("secret://projects/../X", "segment '..' is a relative path segment"),
        ("secret://projects/p1/X?v=1", "segment 'X\\?v=1' may only contain"),
        ("secret://arn:aws:s3:::bucket", "may only contain"),
    ],
)
def test_parse_reference_refuses_malformed_references(reference: str, message: str) -> None:
    with pytest.raises(InvalidSecretReference, match=message) as raised:
        parse_reference(reference)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, SecretsError)


def test_parse_reference_refuses_non_strings() -> None:
    with pytest.raises(InvalidSecretReference):
        parse_reference(None)  # type: ignore[arg-type]


def test_an_arn_path_is_accepted_as_is() -> None:
    assert is_arn(RDS_ARN)
    assert parse_reference(f"secret://{RDS_ARN}") == RDS_ARN
    assert arn_reference(RDS_ARN) == f"secret://{RDS_ARN}"
    china = "arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:orch/x-AbCdEf"
    assert parse_reference(f"secret://{china}") == china


@pytest.mark.parametrize(
    "not_an_arn",
    [
        "arn:aws:secretsmanager:eu-west-1:1234:secret:x",  # account is 12 digits
        "arn:aws:ssm:eu-west-1:123456789012:parameter/x",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:",
    ],
)
def test_arn_reference_refuses_other_arns(not_an_arn: str) -> None:
    assert not is_arn(not_an_arn)
    with pytest.raises(InvalidSecretReference, match="not a Secrets Manager secret ARN"):
        arn_reference(not_an_arn)


def test_parse_prefix_accepts_a_trailing_slash_and_the_bare_scheme() -> None:
    assert parse_prefix("secret://projects/p1/") == "projects/p1"
    assert parse_prefix("secret://projects/p1") == "projects/p1"
    assert parse_prefix("secret://") == ""
    with pytest.raises(InvalidSecretReference, match="an ARN is not a prefix"):
        parse_prefix(f"secret://{RDS_ARN}")
    with pytest.raises(InvalidSecretReference):
        parse_prefix("projects/p1/")


def test_is_under_is_segment_wise() -> None:
    assert is_under("projects/p1/X", "projects/p1")
    assert not is_under("projects/p10/X", "projects/p1")
    assert not is_under("projects/p1", "projects/p1")
    assert is_under("anything", "")


# -- errors and value checks -----------------------------------------------------------------


def test_secret_not_found_is_a_key_error_whose_message_names_the_reference() -> None:
    error = SecretNotFound("secret://projects/p1/X")
    assert isinstance(error, KeyError) and isinstance(error, SecretsError)
    assert str(error) == "no secret stored at secret://projects/p1/X"
    assert error.reference == "secret://projects/p1/X"


def test_check_value_refuses_what_secrets_manager_cannot_store() -> None:
    ref = "secret://projects/p1/X"
    check_value(ref, "x" * MAX_VALUE_BYTES)
    with pytest.raises(SecretTooLargeError, match=f"is {MAX_VALUE_BYTES + 1} bytes") as raised:
        check_value(ref, "x" * (MAX_VALUE_BYTES + 1))
    assert ref in str(raised.value)
    with pytest.raises(SecretTooLargeError, match="bytes"):
        check_value(ref, "é" * (MAX_VALUE_BYTES // 2 + 1))  # counted in UTF-8 bytes, not characters
    with pytest.raises(ValueError, match="is empty"):
        check_value(ref, "")
    with pytest.raises(TypeError, match="must be str, not bytes"):
        check_value(ref, b"hunter22")  # type: ignore[arg-type]


# -- Redactor ----------------------------------------------------------------------------------


def test_every_occurrence_is_masked() -> None:
    redactor = Redactor(["hunter22"])
    assert redactor.redact("pw=hunter22; again hunter22.") == f"pw={MASK}; again {MASK}."


def test_the_longest_value_wins_when_one_contains_another() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.redact("x abcdefgh y abcd z") == f"x {MASK} y {MASK} z"


def test_values_shorter_than_four_characters_are_left_alone() -> None:
    redactor = Redactor(["on", "1", "abc"])
    assert len(redactor) == 0
    assert redactor.redact("turn it on at 1 abc") == "turn it on at 1 abc"


def test_regex_metacharacters_in_values_are_literal() -> None:
    redactor = Redactor(["p4$$.w0rd(*)"])
    assert redactor.redact("a p4$$.w0rd(*) b p4$$xw0rd(*)") == f"a {MASK} b p4$$xw0rd(*)"


def test_a_multi_line_key_is_masked_verbatim_json_escaped_and_line_by_line() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQAAACBmZXN0\n-----END-----\n"
    redactor = Redactor([key])
    assert redactor.redact(f"key:\n{key}done") == f"key:\n{MASK}done"
    log_line = json.dumps({"message": f"using {key}"})
    assert "b3BlbnNzaC1rZXktdjEAAAAA" not in redactor.redact(log_line)
    assert redactor.redact("line: QyNTUxOQAAACBmZXN0") == f"line: {MASK}"


def test_many_values_share_one_pattern() -> None:
    values = [f"token-{i:04d}-{'z' * (i % 7)}" for i in range(500)]
    redactor = Redactor(values)
    text = " | ".join(values)
    assert redactor.redact(text) == " | ".join([MASK] * 500)


def test_values_can_be_added_later() -> None:
    redactor = Redactor()
    assert redactor.redact("hunter22") == "hunter22"
    redactor.add("hunter22", "correct-horse")
    assert redactor.redact("hunter22 correct-horse") == f"{MASK} {MASK}"


def test_redact_obj_walks_dicts_lists_and_tuples_and_keeps_other_leaves() -> None:
    Pair = namedtuple("Pair", "left right")
    redactor = Redactor(["hunter22"])
    obj = {
        "env": {"DATABASE_URL": "postgres://u:hunter22@h/db", "hunter22": 1},
        "argv": ["--password", "hunter22"],
        "pair": Pair("hunter22", 2),
        "tuple": ("x", "hunter22"),
        "count": 3,
        "flag": None,
    }
    assert redactor.redact_obj(obj) == {
        "env": {"DATABASE_URL": f"postgres://u:{MASK}@h/db", MASK: 1},
        "argv": ["--password", MASK],
        "pair": Pair(MASK, 2),
        "tuple": ("x", MASK),
        "count": 3,
        "flag": None,
    }
    assert obj["argv"] == ["--password", "hunter22"], "the input is not modified"


def test_redactor_is_safe_to_share_between_threads() -> None:
    redactor = Redactor()
    values = [f"secret-value-{i}" for i in range(200)]
    leaked: list[str] = []

    def add(chunk: list[str]) -> None:
        for value in chunk:
            redactor.add(value)
            if value in redactor.redact(f"x {value} y"):
                leaked.append(value)

    threads = [threading.Thread(target=add, args=(values[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert leaked == []
    assert redactor.redact(" ".join(values)) == " ".join([MASK] * 200)
