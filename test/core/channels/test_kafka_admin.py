"""The Kafka channel's error translation (the admin module's calls run against a real Kafka in
test_kafka.py, through the channel)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from kbroker.core.channel import ChannelError, ChannelUnavailable, EventTooLarge
from kbroker.core.channels import _kafka_admin as admin


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (KafkaError._MSG_TIMED_OUT, ChannelUnavailable),
        (KafkaError.NOT_ENOUGH_REPLICAS, ChannelUnavailable),
        (KafkaError.MSG_SIZE_TOO_LARGE, EventTooLarge),
        (KafkaError.INVALID_MSG_SIZE, EventTooLarge),
        (KafkaError.INVALID_REPLICATION_FACTOR, ChannelError),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, ChannelError),
    ],
    ids=["timeout", "isr", "too-large", "invalid-size", "bad-replication", "not-allowed"],
)
def test_kafka_errors_translate(code: int, error: type[ChannelError]) -> None:
    got = admin.translate(KafkaError(code), "append")
    assert type(got) is error and str(got).startswith("append: ")


def test_no_error_at_all_is_unavailable() -> None:
    assert type(admin.translate(None, "x")) is ChannelUnavailable


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KafkaException(KafkaError(KafkaError.GROUP_ID_NOT_FOUND)), KafkaError.GROUP_ID_NOT_FOUND),
        (KafkaException("no error inside"), None),
        (RuntimeError("not kafka"), None),
    ],
    ids=["wrapped", "bare-kafka-exception", "other"],
)
def test_error_of_finds_the_kafka_error(exc: BaseException, code: int | None) -> None:
    err = admin.error_of(exc)
    assert (err.code() if err is not None else None) == code
