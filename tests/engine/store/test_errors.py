"""Which Redis errors say "wait, the server is refusing for now" and which say "this data is bad":
the messages as Redis 6.2 and 7 and redis-py's pipelines really phrase them (pure logic)."""

from __future__ import annotations

import pytest
from redis.exceptions import OutOfMemoryError, ResponseError

from engine.ingest.apply import error_code, transient

SHA = "46d1beb59dce1449692f3b2568cf05064254496c"
PIPELINE = f"Command # 1 (EVALSHA {SHA} 4 v:{{v-oom}} d:{{v-oom}}:20791 d:{{v-oom}}:20790...) of pipeline caused error: "
OOM_62 = (f"Error running script (call to f_{SHA}): @user_script:46: @user_script: 46: -OOM command not allowed "
          "when used memory > 'maxmemory'.")
OOM_7 = f"OOM command not allowed when used memory > 'maxmemory'. script: {SHA}, on @user_script:46."
WRONGTYPE_62 = (f"Error running script (call to f_{SHA}): @user_script:29: WRONGTYPE Operation against a key "
                "holding the wrong kind of value")
WRONGTYPE_7 = f"WRONGTYPE Operation against a key holding the wrong kind of value script: {SHA}, on @user_script:29."


@pytest.mark.parametrize(("message", "code"), [
    (OOM_62, "OOM"), (PIPELINE + OOM_62, "OOM"), (OOM_7, "OOM"), (PIPELINE + OOM_7, "OOM"),
    (WRONGTYPE_62, "WRONGTYPE"), (PIPELINE + WRONGTYPE_7, "WRONGTYPE"),
    ("BUSY Redis is busy running a script.", "BUSY"),
    (PIPELINE + "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist", "MISCONF"),
    (f"Error running script (call to f_{SHA}): @user_script:3: user_script:3: attempt to compare nil", "Error"),
])
def test_the_code_is_read_through_pipeline_and_script_wrapping(message: str, code: str) -> None:
    assert error_code(message) == code


def test_server_state_is_transient_whatever_the_wrapping_and_bad_data_is_not() -> None:
    assert transient(ResponseError(PIPELINE + OOM_62)) and transient(OutOfMemoryError(PIPELINE + OOM_7))
    assert transient(ResponseError("READONLY You can't write against a read only replica."))
    assert not transient(ResponseError(PIPELINE + WRONGTYPE_62)) and not transient(ResponseError(WRONGTYPE_7))
    # A visitor id is user data: naming a server state in it must not make a data error transient.
    assert not transient(ResponseError("Command # 1 (EVALSHA x 1 v:{ BUSY}) of pipeline caused error: " + WRONGTYPE_7))
