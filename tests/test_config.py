"""VanillaConfig, EntryCodec and thread-id bits: cycle arithmetic and folder names (vanilla-format.md §1-§3, §8)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pychro import VanillaChronicleReader, VanillaConfig
from pychro import _layout as L
from pychro.config import resolve_config

UTC = dt.UTC
T0 = dt.datetime(2015, 2, 21, 13, 5, 1, 234000, tzinfo=UTC)  # 2015-02-21 13:05:01.234 UTC
T0_MS = 1424523901234


def test_defaults_equal_java() -> None:
    cfg = VanillaConfig()
    assert cfg.cycle == "DAYS"
    assert cfg.cycle_format == "yyyyMMdd"
    assert cfg.cycle_length_ms == 86_400_000
    assert cfg.cycle_time_zone == "UTC"
    assert cfg.entries_per_cycle == 1 << 40
    assert cfg.index_block_size == 16 << 20
    assert cfg.data_block_size == 64 << 20
    assert cfg.message_capacity == 128 << 10
    assert cfg.thread_id_bits is None
    assert (cfg.seq_bits, cfg.slot_bits, cfg.slots_per_index_file) == (40, 21, 2**21)


@pytest.mark.parametrize(
    "cycle, fmt, length, seq_bits, folder, number",
    [
        ("DAYS", "yyyyMMdd", 86_400_000, 40, "20150221", 16487),
        ("HOURS", "yyyyMMddHH", 3_600_000, 40, "2015022113", 395701),
        ("MINUTES", "yyyyMMddHHmm", 60_000, 34, "201502211305", 23742065),
        ("SECONDS", "yyyyMMddHHmmss", 1_000, 28, "20150221130501", 1424523901),
    ],
)
def test_cycle_presets(cycle: str, fmt: str, length: int, seq_bits: int, folder: str, number: int) -> None:
    cfg = VanillaConfig(cycle=cycle)
    assert (cfg.cycle_format, cfg.cycle_length_ms, cfg.seq_bits) == (fmt, length, seq_bits)
    assert cfg.cycle_of_ms(T0_MS) == number == T0_MS // length
    assert cfg.cycle_of(T0) == number
    assert cfg.cycle_of(T0.replace(tzinfo=None)) == number  # naive = UTC
    assert cfg.folder_name(number) == folder
    assert cfg.cycle_of_folder(folder) == number
    assert cfg.cycle_datetime(number) == dt.datetime.fromtimestamp(number * length / 1000, UTC)
    assert cfg.index_of(number, 5) == (number << seq_bits) | 5
    assert cfg.split_index((number << seq_bits) | 5) == (number, 5)
    assert VanillaConfig(cycle=cycle.lower()).cycle == cycle


def test_cycle_of_date_and_aware_datetime() -> None:
    cfg = VanillaConfig()
    assert cfg.cycle_of(dt.date(2015, 2, 21)) == 16487
    assert cfg.cycle_of(dt.date(1970, 1, 1)) == 0
    # an aware datetime in another zone is converted: 2015-02-22 01:00+02:00 is 2015-02-21 23:00 UTC
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert cfg.cycle_of(dt.datetime(2015, 2, 22, 1, 0, tzinfo=plus2)) == 16487
    assert cfg.cycle_of(dt.datetime(2015, 2, 21, 23, 59, 59, 999000)) == 16487
    assert cfg.cycle_of(dt.datetime(2015, 2, 22)) == 16488
    assert cfg.cycle_of(1424563200000) == 16488


def test_known_full_indices() -> None:
    cfg = VanillaConfig()
    assert cfg.index_of(16487, 0) == 0x40670000000000
    assert cfg.index_of(16487, 10) == 0x4067000000000A
    assert cfg.index_of(16488, 10) == 18128747718770698  # pychro 0.8 test_rolls_day
    assert VanillaChronicleReader.to_full_index(dt.date(2015, 4, 16), 10) == 18187021835042826
    assert VanillaChronicleReader.from_full_index(18187021835042826) == (dt.date(2015, 4, 16), 10)
    assert cfg.date_of_index(0x40670000000005) == dt.datetime(2015, 2, 21, tzinfo=UTC)


def test_folder_parse_rejects_junk() -> None:
    cfg = VanillaConfig()
    for name in ("20150221.bak", "2015022", "2015022113", "abc", "2015-02-21", "20151321", "20150230", ""):
        assert cfg.cycle_of_folder(name) is None, name
    hourly = VanillaConfig(cycle="HOURS")
    assert hourly.cycle_of_folder("20150221") is None
    assert hourly.cycle_of_folder("2015022124") is None


def test_nested_cycle_format() -> None:
    cfg = VanillaConfig(cycle=None, cycle_format="yyyy/MM/dd", cycle_length_ms=86_400_000)
    assert cfg.folder_depth == 3
    assert cfg.folder_name(16487) == "2015/02/21"
    assert cfg.cycle_of_folder("2015/02/21") == 16487
    assert cfg.cycle_of_folder("2015/02") is None
    hourly = VanillaConfig(cycle="HOURS", cycle_format="yyyy-MM-dd/HH")
    assert hourly.folder_name(395701) == "2015-02-21/13"
    assert hourly.entries_per_cycle == 1 << 40


def test_quoted_literals_in_format() -> None:
    cfg = VanillaConfig(cycle=None, cycle_format="'day'yyyyMMdd''", cycle_length_ms=86_400_000)
    assert cfg.folder_name(16487) == "day20150221'"
    assert cfg.cycle_of_folder("day20150221'") == 16487
    two_digit = VanillaConfig(cycle=None, cycle_format="yyMMdd", cycle_length_ms=86_400_000)
    assert two_digit.folder_name(16487) == "150221"
    assert two_digit.cycle_of_folder("150221") == 16487


@pytest.mark.parametrize(
    "zone, folder",
    [("America/New_York", "20150220"), ("Europe/Berlin", "20150221"), ("Asia/Tokyo", "20150221"), ("UTC", "20150221")],
)
def test_time_zone_changes_folder_names_only(zone: str, folder: str) -> None:
    cfg = VanillaConfig(cycle_time_zone=zone)
    assert cfg.cycle_of_ms(T0_MS) == 16487  # arithmetic stays UTC
    assert cfg.folder_name(16487) == folder  # midnight UTC formatted in the zone (§1)
    assert cfg.cycle_of_folder(folder) == 16487  # no Java 3.6 off-by-one on the way back
    assert cfg.index_of(16487, 1) == VanillaConfig().index_of(16487, 1)


def test_hourly_time_zone_folder() -> None:
    cfg = VanillaConfig(cycle="HOURS", cycle_time_zone="Asia/Kolkata")  # +05:30
    cycle = cfg.cycle_of_ms(T0_MS)
    assert cfg.folder_name(cycle) == "2015022118"  # 13:00 UTC = 18:30 IST, formatted to the hour
    assert cfg.cycle_of_folder("2015022118") == cycle


def test_custom_cycle_needs_format_and_length() -> None:
    with pytest.raises(ValueError, match="custom cycle"):
        VanillaConfig(cycle=None, cycle_format="yyyyMMdd")
    with pytest.raises(ValueError, match="custom cycle"):
        VanillaConfig(cycle=None, cycle_length_ms=1000)
    cfg = VanillaConfig(cycle=None, cycle_format="yyyyMMddHHmm", cycle_length_ms=300_000)  # 5 minutes
    assert cfg.entries_per_cycle == 1 << 40
    assert cfg.folder_name(cfg.cycle_of_ms(T0_MS)) == "201502211305"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cycle": "WEEKS"}, "cycle must be one of"),
        ({"index_block_size": 1000}, "power of two"),
        ({"index_block_size": 32}, "at least 64"),
        ({"data_block_size": 3000}, "power of two"),
        ({"entries_per_cycle": 1 << 7}, "between"),
        ({"entries_per_cycle": 1 << 49}, "between"),
        ({"entries_per_cycle": 1000}, "power of two"),
        ({"message_capacity": 0}, "message_capacity"),
        ({"data_block_size": 4096, "message_capacity": 4093}, "message_capacity"),
        ({"thread_id_bits": 0}, "thread_id_bits"),
        ({"thread_id_bits": 33}, "thread_id_bits"),
        ({"cycle_length_ms": 0}, "cycle_length_ms"),
        ({"cycle": None, "cycle_format": "yyyyMMddQQ", "cycle_length_ms": 1000}, "not supported"),
        ({"cycle": None, "cycle_format": "----", "cycle_length_ms": 1000}, "cycle_format"),
    ],
)
def test_invalid_configs(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        VanillaConfig(**kwargs)  # type: ignore[arg-type]


def test_message_capacity_upper_bound_is_block_minus_header() -> None:
    assert VanillaConfig(data_block_size=4096, message_capacity=4092).message_capacity == 4092


def test_config_is_frozen_and_comparable() -> None:
    cfg = VanillaConfig(cycle="HOURS")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cycle = "DAYS"  # type: ignore[misc]
    assert cfg == VanillaConfig(cycle="HOURS")
    assert hash(cfg) == hash(VanillaConfig(cycle="HOURS"))
    assert cfg != VanillaConfig()
    assert cfg.with_thread_id_bits(22).thread_id_bits == 22
    assert cfg.thread_id_bits is None


def test_resolve_config() -> None:
    assert resolve_config(None, None) == VanillaConfig()
    assert resolve_config(None, 16).thread_id_bits == 16
    assert resolve_config(VanillaConfig(thread_id_bits=16), 16).thread_id_bits == 16
    with pytest.raises(ValueError, match="disagrees"):
        resolve_config(VanillaConfig(thread_id_bits=16), 15)
    with pytest.raises(TypeError):
        resolve_config({"cycle": "DAYS"}, None)  # type: ignore[arg-type]


# -- index entries (§2) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [15, 16, 22, 24])
def test_entry_codec(bits: int) -> None:
    codec = L.EntryCodec(bits, 64 << 20)
    assert codec.tid_shift == 64 - bits
    assert codec.data_bits == 26
    tid, file_no, offset = (1 << bits) - 1, 3, (64 << 20) - 4
    entry = codec.pack(tid, file_no, offset)
    assert entry == (tid << (64 - bits)) + file_no * 2**26 + offset
    assert entry < 1 << 64
    assert codec.unpack(entry) == (tid, file_no, offset)
    assert codec.max_file_no == (1 << (64 - bits - 26)) - 1
    with pytest.raises(ValueError, match="thread id"):
        codec.pack(1 << bits, 0, 4)
    with pytest.raises(ValueError, match="data file number"):
        codec.pack(1, codec.max_file_no + 1, 4)


def test_entry_codec_sample_slot() -> None:
    # §2: entry 0 of 20150221/index-0 is 0xd9d0000000000004 -> tid 55760, file 0, offset 4 with T=16
    assert L.EntryCodec(16, 64 << 20).unpack(0xD9D0000000000004) == (55760, 0, 4)
    assert L.EntryCodec(15, 64 << 20).unpack(0xD9D0000000000004)[0] == 55760 >> 1


def test_entry_codec_small_blocks() -> None:
    codec = L.EntryCodec(16, 4096)
    assert codec.pack(7, 5, 100) == (7 << 48) + 5 * 4096 + 100
    assert codec.unpack((7 << 48) + 5 * 4096 + 100) == (7, 5, 100)
    with pytest.raises(ValueError):
        L.EntryCodec(40, 1 << 26)  # no bits left for the file number
    with pytest.raises(ValueError):
        L.EntryCodec(16, 5000)


def test_header_helpers() -> None:
    assert L.header_for(0) == -1 and L.header_for(15) == -16
    assert L.length_from_header(-16) == 15
    assert L.length_from_header(0) == -1
    assert L.length_from_header(-1) == 0
    assert L.length_from_header(~(1 << 30)) == -2  # top bits of ~header set
    assert L.length_from_header(5) == -2
    assert [L.align4(n) for n in (0, 1, 3, 4, 5, 19)] == [0, 4, 4, 4, 8, 20]


def test_file_names() -> None:
    assert L.index_file_name(3) == "index-3"
    assert L.data_file_name(55724, 0) == "data-55724-0"
    assert L.parse_data_file_name("data-55724-12") == (55724, 12)
    assert L.parse_index_file_name("index-12") == 12
    for junk in ("data-1", "data-1-2-3", "data-a-1", "data--1-1", "index-1.bak", "datum-1-1"):
        assert L.parse_data_file_name(junk) is None
    for junk in ("index-", "index-x", "index--1", "data-1-1"):
        assert L.parse_index_file_name(junk) is None


# -- thread-id bits of this host (§2) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "pid_max, bits",
    [(16383, 14), (16384, 14), (16385, 15), (32767, 15), (32768, 15), (32769, 16), (65536, 16), (65537, 17),
     (131072, 17), (131073, 18), (4194304, 22)],
)
def test_pid_max_bits(pid_max: int, bits: int) -> None:
    assert L.pid_max_bits(pid_max) == bits
    assert VanillaChronicleReader.get_thread_id_bits(pid_max) == bits


def test_host_thread_id_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCHRO_THREAD_ID_BITS", "22")
    assert L.host_thread_id_bits() == 22
    monkeypatch.delenv("PYCHRO_THREAD_ID_BITS")
    bits = L.host_thread_id_bits()
    with open("/proc/sys/kernel/pid_max") as fh:
        assert bits == max(16, L.pid_max_bits(int(fh.read())))


def test_folder_names_parsed_once_are_kept_per_naming_settings() -> None:
    """cycle_of_folder keeps what it parsed, keyed by every setting that names folders: the same folder name
    under another zone or cycle length is parsed again, never answered from another configuration's entry."""
    utc = VanillaConfig(cycle="HOURS")
    ist = VanillaConfig(cycle="HOURS", cycle_time_zone="Asia/Kolkata")
    minutes = VanillaConfig(cycle=None, cycle_format="yyyyMMddHH", cycle_length_ms=3_600_000 * 2)
    name = utc.folder_name(utc.cycle_of_ms(1_704_186_000_000))
    first = [cfg.cycle_of_folder(name) for cfg in (utc, ist, minutes)]
    assert first == [cfg._parse_folder(name) for cfg in (utc, ist, minutes)]
    assert [cfg.cycle_of_folder(name) for cfg in (ist, utc, minutes)] == [first[1], first[0], first[2]]
    assert first[0] != first[1]  # (the zones name this hour differently)
