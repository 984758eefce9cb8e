"""The extension imports and reports its backends honestly."""
import lyra2


def test_backends_shape():
    b = lyra2.backends()
    assert b["cpu"] is True
    assert isinstance(b["cuda"], bool)
    assert isinstance(b["devices"], list)
    if not b["cuda_compiled"]:
        assert b["cuda"] is False and b["devices"] == []
    assert isinstance(b["cuda_emulated"], bool)
    if b["cuda_emulated"]:  # the emulation build: exactly one device, named as emulated
        assert b["cuda"] and len(b["devices"]) == 1 and "emulation" in b["devices"][0]["name"]
    for d in b["devices"]:
        assert set(d) == {"index", "name", "memory_bytes"}


def test_error_class():
    assert issubclass(lyra2.Lyra2Error, RuntimeError)
    assert lyra2.Lyra2Error.__module__ == "lyra2"
