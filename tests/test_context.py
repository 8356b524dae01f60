"""Request ids: minted from the OS's random source in batches, never repeated, kept only from trusted hops."""

from __future__ import annotations

import os
import re
import sys

import pytest

from gateway.context import accept_request_id, new_request_id

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_ids_are_32_hex_digits_and_never_repeat_across_batches() -> None:
    ids = [new_request_id() for _ in range(1000)]  # several reads of the random source
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_trusted_hops_well_formed_id_is_kept_anything_else_is_replaced() -> None:
    assert accept_request_id("abc-123", from_trusted_hop=True) == "abc-123"
    assert accept_request_id("abc-123", from_trusted_hop=False) != "abc-123"
    assert HEX32.fullmatch(accept_request_id("bad id\n", from_trusted_hop=True))
    assert HEX32.fullmatch(accept_request_id(None, from_trusted_hop=True))


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs fork")
def test_a_forked_child_does_not_hand_out_its_parents_ids() -> None:
    new_request_id()  # the parent holds unused ids now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert HEX32.fullmatch(child_id)
    assert child_id != new_request_id()
