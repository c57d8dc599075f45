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
