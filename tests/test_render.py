from ksmtui.text.render import bucket_label, hist_lines


def test_bucket_labels_use_binary_suffixes_like_bpftrace():
    assert [bucket_label(i) for i in (0, 1, 2, 10, 11, 20, 21)] == [
        "[0]", "[1]", "[2, 4)", "[512, 1K)", "[1K, 2K)", "[512K, 1M)", "[1M, 2M)",
    ]


def test_hist_lines_match_the_cover_letter_rows():
    counts = [0] * 40
    counts[8], counts[9], counts[10] = 21, 12509, 769  # [128,256), [256,512), [512,1K)
    assert hist_lines(counts) == [
        "[128, 256)            21 |" + " " * 52 + "|",
        "[256, 512)         12509 |" + "@" * 52 + "|",
        "[512, 1K)            769 |" + "@" * 3 + " " * 49 + "|",
    ]


def test_hist_lines_keep_zero_buckets_between_and_drop_them_outside():
    counts = [0] * 40
    counts[3], counts[5] = 4, 2
    rows = hist_lines(counts)
    assert [r[:16].strip() for r in rows] == ["[4, 8)", "[8, 16)", "[16, 32)"]
    assert hist_lines([0] * 40) == []


def test_percentile_is_the_upper_bound_of_the_bucket_holding_the_rank():
    from ksmtui.text.render import percentile

    counts = [0] * 40
    counts[12], counts[13] = 90, 10  # [2K, 4K), [4K, 8K)
    assert percentile(counts, 50) == 4096
    assert percentile(counts, 95) == 8192
    assert percentile([0] * 40, 50) == 0


def test_a_rolling_histogram_keeps_the_rows_of_the_whole_run():
    since_start = [0] * 40
    since_start[3], since_start[9] = 50, 7
    rolling = [0] * 40
    rolling[5] = 2
    rows = hist_lines(rolling, span=since_start)
    assert [r[:16].strip() for r in rows] == [bucket_label(i) for i in range(3, 10)]
    assert rows[2] == f"{'[16, 32)':<16}{2:>8} |" + "@" * 52 + "|"
    quiet = hist_lines([0] * 40, span=since_start)  # nothing in the window: the rows stay, empty
    assert len(quiet) == 7 and all(r.endswith("0 |" + " " * 52 + "|") for r in quiet)


def test_every_knob_has_its_meaning_unit_values_and_default_in_one_line():
    from engine.knobs import ALL_KNOBS
    from ksmtui.text.knobs import KNOB_DOCS, knob_help

    assert set(KNOB_DOCS) == set(ALL_KNOBS)  # a knob added to engine.knobs needs its words here
    assert knob_help("sleep_millisecs") == ("sleep_millisecs: how long ksmd sleeps between two batches of "
                                            "pages_to_scan · unit: ms · an integer 0..4294967295 · kernel default 20")
    assert knob_help("run").endswith("· 0, 1 or 2 · kernel default 0")  # the kernel's, not a scenario's 1
    assert knob_help("flow").endswith("· default optimized")  # the model's own knob
    assert "does not know" in knob_help("a_knob_of_v7")
    assert all("\n" not in knob_help(name) for name in ALL_KNOBS)
