"""Settings of the sinks: ``[output.mqtt]``. Validated when the config is read (streamprep.config)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from streamprep.values.names import check_prefix
from streamprep.values.settings import Strict


class MqttConfig(Strict):
    """``[output.mqtt]``; ``mqtt = "URL"`` is short for ``[output.mqtt] url = "URL"``.

    The password comes from the URL, ``password_env`` (an environment variable's name), ``password_file``,
    or ``$CREDENTIALS_DIRECTORY/mqtt-password`` (systemd's LoadCredential), in that order; never log it.
    """

    url: str  # mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://...
    # default: streamprep-DEVICE (-workerK under --workers)
    client_id: str | None = Field(None, min_length=1, max_length=128)
    topic_prefix: str = Field("streamprep", min_length=1)  # topics are PREFIX/DEVICE/SOURCE/...
    qos_results: Literal[0, 1, 2] = 1  # QoS of results and events
    qos_status: Literal[0, 1, 2] = 1  # QoS of the retained statuses
    keepalive_s: int = Field(30, ge=5, le=3600)  # MQTT keepalive
    persistent_session: bool = False  # keep the broker session across reconnects (clean_start off)
    connect_timeout_s: float = Field(5.0, gt=0, le=120)  # connecting to the broker gives up after this
    publish_timeout_s: float = Field(5.0, gt=0, le=120)  # a publish not acknowledged by then is sent again
    backoff_cap_s: float = Field(10.0, gt=0, le=3600)  # reconnecting waits up to this
    wait_for_broker: bool = False  # start even if the broker is unreachable (default: fail fast)
    username: str | None = None  # the broker user (or in the URL)
    password_env: str | None = None  # the password from this environment variable
    password_file: Path | None = None  # ...or from this file (default: $CREDENTIALS_DIRECTORY/mqtt-password)
    ca_file: Path | None = None  # verify the broker against this CA (TLS)
    cert_file: Path | None = None  # client certificate (TLS)
    key_file: Path | None = None  # its key
    tls_insecure: bool = False  # skip certificate and host name verification (testing only)
    # results waiting for the broker, in memory then spooled to state_dir
    outbox_max: int = Field(10_000, ge=1, le=10_000_000)
    # when the outbox is full: drop the oldest (counted) or slow the pipeline
    outbox_policy: Literal["drop_oldest", "block"] = "drop_oldest"
    # each source's retained status is published again with its counts this often (0: only on changes)
    status_interval_s: float = Field(10.0, ge=0, le=3600)

    @field_validator("topic_prefix")
    @classmethod
    def _levels(cls, v: str) -> str:
        return check_prefix(v)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^mqtts?://[^/]+", v):
            raise ValueError("must look like mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://...")
        return v
