"""Every malformed scenario gives one ScenarioError line naming the file, table and key.

Each file in tests/malformed/ opens with `# expect: TEXT`; TEXT must appear in the error, and it
spells the table and key where there is one (`process[0].region[0].pages: ...`).
"""

from pathlib import Path

import pytest

from engine.scenario import ScenarioError, load_scenario
from ksmtui.cli import main

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.toml"))


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_every_file_of_the_corpus_is_tested_and_says_what_it_expects():
    files = sorted((Path(__file__).parent / "malformed").iterdir())
    assert CORPUS and files == CORPUS  # a file the glob misses would be tested by nothing
    for path in CORPUS:
        expected(path)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_file_gives_one_clear_line(path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected(path) in message


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_command_line_refuses_each_file_in_one_line_with_status_2(path, capsys):
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"ksmtui check: error: {path}: ") and expected(path) in err
