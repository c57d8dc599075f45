"""Every malformed scenario gives one ScenarioError line naming the file, table and key.

Each file in tests/malformed/ opens with `# expect: TEXT`; TEXT must appear in the error, and it
spells the table and key where there is one (`process[0].region[0].pages: ...`).
"""

from pathlib import Path

import pytest

from engine.scenario import ScenarioError, load_scenario

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.toml"))


def expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_corpus_is_large():
    assert len(CORPUS) >= 35


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_file_gives_one_clear_line(path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected(path) in message
