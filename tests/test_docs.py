"""The documentation says how the numbers are made: the page exists, README links it,
and the legacy FRC value is documented as what it is."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "how-the-numbers-are-made.md"


def test_how_the_numbers_are_made_names_every_definition_and_reference():
    text = PAGE.read_text()
    for reference in ("Wang, Bovik, Sheikh & Simoncelli 2004", "Wang, Simoncelli & Bovik 2003",
                      "van Heel & Schatz 2005", "Rosenthal & Henderson 2003", "Guizar-Sicairos, Thurman & Fienup 2008"):
        assert reference in text, reference
    for topic in ("## The scored region", "## Registration: the gauge", "One data-range rule", "### FRC",
                  "0.0448, 0.2856, 0.3001, 0.2363, 0.1333", "compare_models.metrics/2", "compile_time_s"):
        assert topic in text, topic


def test_half_set_frc_is_documented_with_its_split_registration_thresholds_and_outputs():
    """The page has a half-set section, and README says what the half-set rows are."""
    text = PAGE.read_text()
    section = text.split("## Half-set FRC")[1].split("\n## ")[0]
    for topic in ("checkerboard", "alternate", "--ptychi-half-sets", "--ptychi-half-set-paths",
                  "ptychi_half1.npz", "--min-half-set-coverage", "half 2 onto half 1", "1/2-bit", "1-bit",
                  "1/7", "independent", "first", "van Heel & Schatz 2005", "Vila-Comamala"):
        assert topic in section, topic
    for name in ("halfset_frc1over7", "halfset_frc_halfbit", "halfset_frc_1bit", "half_set_frc", "threshold_halfbit"):
        assert name in text, name
    readme = (ROOT / "README.md").read_text()
    for name in ("--half-sets", "halfset_frc_halfbit", "--ptychi-half-sets", "--no-half-sets", "objectGuess"):
        assert name in readme, name


def test_readme_links_the_page_and_says_frc1over7_is_not_a_resolution():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What compare-models writes")[1].split("\n## ")[0]
    assert "docs/how-the-numbers-are-made.md" in section
    assert "frc1over7 (legacy" in section and "not a resolution" in section
    # No 1-bit or 1/2-bit cut-off against ground truth; the half-set ones are named halfset_*.
    assert not re.search(r"(?<!halfset_)frc_(1bit|halfbit)", readme)


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_and_docs_point_only_to_documents_in_the_repository():
    """A user's clone has no project-internal design file or fixture folder: every document
    README and docs/ link or name is in the repository."""
    for document in DOCUMENTS:
        text = document.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text, document.name
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            assert (document.parent / target).exists(), f"{document.name} links {target}, which does not exist"
        for match in re.finditer(r"(?<![\w/])(?:docs|configs|scripts|tests|compare_models)/[\w./-]+\.(?:md|py|yaml)", text):
            if "PtychoPINN" in text[max(match.start() - 20, 0) : match.start()]:
                continue  # a file of PtychoPINN's, not of this repository
            assert (ROOT / match.group()).exists(), f"{document.name} names {match.group()}, which does not exist"


def test_docs_and_tests_state_rules_not_internal_issue_numbers():
    pattern = re.compile(r"\bissues? ?#?\d+", re.IGNORECASE)
    for path in [*DOCUMENTS, *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not pattern.search(line), f"{path.name}:{number} cites an issue number: {line.strip()}"


def test_every_section_of_a_page_has_its_own_title():
    """Sections (# and ## headings) are unique on a page; subsections may repeat under them."""
    for document in DOCUMENTS:
        headings = [line for line in document.read_text().splitlines() if line.startswith(("# ", "## "))]
        repeated = {h for h in headings if headings.count(h) > 1}
        assert not repeated, f"{document.name} repeats {sorted(repeated)}"
