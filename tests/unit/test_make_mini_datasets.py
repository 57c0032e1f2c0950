"""The mini-dataset generator: text normalisation, the English-German grammar, speakers, sound
events, and the three datasets read back the way dataset-prep scripts read the real ones."""

import csv
import random
import re

import numpy as np
import pytest
import soundfile as sf

from tools.make_mini_datasets import main, parse_sizes
from tools.mini_data import grammar
from tools.mini_data.audioset import AudioSetSizes, make_audioset
from tools.mini_data.audioset_events import SOUND_CLASSES, synthesize_event
from tools.mini_data.covost import CovostSizes, make_covost, split_pairs
from tools.mini_data.grammar import (
    ACCUSATIVE,
    DATIVE,
    NOMINATIVE,
    PRONOUNS,
    TIMES,
    Clause,
    NounPhrase,
    adjective,
    german_noun_phrase,
    noun,
    verb,
)
from tools.mini_data.librispeech import LibriSpeechSizes, make_librispeech
from tools.mini_data.output import COMPLETE_MARKER, finish_dataset, start_dataset
from tools.mini_data.text import librispeech_normalise, number_to_words
from tools.mini_data.voices import make_speakers

SMALL_LIBRISPEECH = LibriSpeechSizes(
    train_utterances=16,
    dev_utterances=6,
    test_utterances=6,
    test_other_utterances=4,
    train_speakers=4,
    dev_speakers=2,
    test_speakers=2,
    test_other_speakers=2,
    lm_sentences=50,
)
SMALL_AUDIOSET = AudioSetSizes(
    train_clips=16, eval_clips=8, missing_fraction=0.2, short_fraction=0.2
)
SMALL_COVOST = CovostSizes(
    train=40, dev=4, test=4, train_speakers=4, dev_speakers=2, test_speakers=2
)


# ---------------------------------------------------------------- text normalisation


@pytest.mark.parametrize(
    "number, words",
    [
        (0, "zero"),
        (7, "seven"),
        (15, "fifteen"),
        (40, "forty"),
        (99, "ninety nine"),
        (100, "one hundred"),
        (342, "three hundred forty two"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (1066, "one thousand sixty six"),
        (1905, "nineteen oh five"),
        (1984, "nineteen eighty four"),
        (1900, "nineteen hundred"),
        (2024, "twenty twenty four"),
        (12345, "twelve thousand three hundred forty five"),
    ],
)
def test_numbers_are_spelled_as_librispeech_readers_say_them(number, words):
    assert number_to_words(number) == words


def test_normalisation_keeps_letters_and_apostrophes_in_upper_case():
    assert librispeech_normalise("Don't touch the stove, it's still hot.") == (
        "DON'T TOUCH THE STOVE IT'S STILL HOT"
    )
    assert librispeech_normalise("The war ended in 1945.") == "THE WAR ENDED IN NINETEEN FORTY FIVE"
    assert librispeech_normalise("'Quoted' well-known -- words!") == "QUOTED WELL KNOWN WORDS"


# ---------------------------------------------------------------- German agreement


@pytest.mark.parametrize(
    "english_noun, determiner, adjective_word, case, expected",
    [
        ("man", "the", "old", NOMINATIVE, "der alte Mann"),
        ("man", "the", "old", ACCUSATIVE, "den alten Mann"),
        ("man", "the", "old", DATIVE, "dem alten Mann"),
        ("woman", "the", "young", ACCUSATIVE, "die junge Frau"),
        ("woman", "the", "young", DATIVE, "der jungen Frau"),
        ("book", "the", "new", NOMINATIVE, "das neue Buch"),
        ("apple", "a", "red", NOMINATIVE, "ein roter Apfel"),
        ("apple", "a", "red", ACCUSATIVE, "einen roten Apfel"),
        ("apple", "a", "red", DATIVE, "einem roten Apfel"),
        ("child", "a", "small", NOMINATIVE, "ein kleines Kind"),
        ("child", "a", "small", ACCUSATIVE, "ein kleines Kind"),
        ("cup", "a", "green", DATIVE, "einer grünen Tasse"),
        ("cup", "a", None, ACCUSATIVE, "eine Tasse"),
        ("dog", "two", "big", NOMINATIVE, "zwei große Hunde"),
        ("dog", "two", "big", DATIVE, "zwei großen Hunden"),
        ("car", "three", None, DATIVE, "drei Autos"),
        ("teacher", "three", None, DATIVE, "drei Lehrern"),
    ],
)
def test_german_articles_and_adjective_endings_follow_gender_case_and_article(
    english_noun, determiner, adjective_word, case, expected
):
    modifier = adjective(adjective_word) if adjective_word else None
    phrase = NounPhrase(noun(english_noun), determiner, modifier)
    assert german_noun_phrase(phrase, case) == expected


def test_definite_plurals_take_weak_endings_in_every_case():
    phrase = NounPhrase(noun("bird"), "the", adjective("small"), plural=True)
    assert german_noun_phrase(phrase, NOMINATIVE) == "die kleinen Vögel"
    assert german_noun_phrase(phrase, DATIVE) == "den kleinen Vögeln"
    assert grammar.english_noun_phrase(phrase) == "the small birds"


def test_verbs_agree_with_pronoun_and_noun_subjects():
    see, obj = verb("see"), NounPhrase(noun("dog"), "the")
    cases = {
        PRONOUNS[0]: ("I see the dog.", "Ich sehe den Hund."),
        PRONOUNS[1]: ("He sees the dog.", "Er sieht den Hund."),
        PRONOUNS[3]: ("We see the dog.", "Wir sehen den Hund."),
        NounPhrase(noun("child"), "the", plural=True): (
            "The children see the dog.",
            "Die Kinder sehen den Hund.",
        ),
    }
    for subject, (english, german) in cases.items():
        clause = Clause(subject, see, obj)
        assert (grammar.english(clause), grammar.german(clause)) == (english, german)


def test_fronted_time_puts_the_finite_verb_second():
    clause = Clause(PRONOUNS[4], verb("wait"), time=TIMES[2])
    assert grammar.german(clause) == "Morgen warten sie."
    assert grammar.english(clause) == "Tomorrow they wait."


def test_modal_sends_the_infinitive_to_the_end_and_in_dem_contracts():
    clause = Clause(
        subject=NounPhrase(noun("girl"), "a", adjective("young")),
        verb=verb("play"),
        modal=verb("want"),
        prepositional_object=NounPhrase(noun("garden"), "the", adjective("big")),
        time=TIMES[0],
    )
    assert grammar.english(clause) == "Today a young girl wants to play in the big garden."
    assert grammar.german(clause) == "Heute will ein junges Mädchen im großen Garten spielen."
    with_dog = Clause(
        PRONOUNS[2],
        verb("play"),
        prepositional_object=NounPhrase(noun("dog"), "a"),
        preposition="with",
    )
    assert grammar.german(with_dog) == "Sie spielt mit einem Hund."


def test_english_uses_an_before_a_vowel():
    phrase = NounPhrase(noun("dog"), "a", adjective("old"))
    assert grammar.english_noun_phrase(phrase) == "an old dog"
    assert grammar.english_noun_phrase(NounPhrase(noun("apple"), "a")) == "an apple"


def test_every_random_german_sentence_capitalises_nouns_and_puts_the_verb_second():
    finite_forms = {
        form
        for v in grammar.VERBS + grammar.MODALS
        for form in (v.german_first, v.german_third, v.german_plural)
    }
    nouns = {form for n in grammar.NOUNS for form in (n.german, n.german_plural)}
    nouns |= {plural + "n" for plural in nouns}
    rng = random.Random(3)
    for _ in range(300):
        clause = grammar.random_clause(rng)
        words = grammar.german(clause).rstrip(".").split()
        if clause.time:
            assert words[1] in finite_forms
        else:
            subject_length = 1 if isinstance(clause.subject, grammar.Pronoun) else None
            position = subject_length or len(german_noun_phrase(clause.subject, NOMINATIVE).split())
            assert words[position] in finite_forms
        for word in words[1:]:
            assert (word in nouns) == (word[0].isupper()), word


def test_covost_dev_and_test_are_new_sentences_made_of_training_words():
    splits = split_pairs(CovostSizes(train=300, dev=40, test=40), random.Random(0))
    train_sources = {source for source, _ in splits["train"]}
    vocabulary = {w for pair in splits["train"] for text in pair for w in text.rstrip(".").split()}
    for split in ("dev", "test"):
        assert len(splits[split]) == 40
        for source, target in splits[split]:
            assert source not in train_sources
            assert set(source.rstrip(".").split()) | set(target.rstrip(".").split()) <= vocabulary
    assert not {s for s, _ in splits["dev"]} & {s for s, _ in splits["test"]}
    assert all(4 <= len(source.split()) <= 8 for split in splits.values() for source, _ in split)


# ---------------------------------------------------------------- speakers and sounds


def test_held_out_speakers_use_variants_unseen_in_training():
    speakers = make_speakers({"train": 20, "dev": 4, "test": 4}, ("dev", "test"), seed=1, salt="t")
    train_variants = {s.voice.variant for s in speakers["train"]}
    for split in ("dev", "test"):
        assert train_variants.isdisjoint(s.voice.variant for s in speakers[split])
        assert {s.sex for s in speakers[split]} == {"M", "F"}
    voices = [s.voice for split in speakers.values() for s in split]
    assert len(set(voices)) == len(voices)


def _band_energy(signal, low, high):
    spectrum = np.abs(np.fft.rfft(signal)) ** 2
    frequencies = np.fft.rfftfreq(len(signal), 1 / 16000)
    return spectrum[(frequencies >= low) & (frequencies < high)].sum()


def test_pink_noise_tilts_to_low_frequencies_and_white_noise_is_flat():
    rng = np.random.default_rng(0)
    white, pink = synthesize_event("White noise", rng), synthesize_event("Pink noise", rng)
    white_ratio = _band_energy(white, 100, 600) / _band_energy(white, 5000, 5500)
    pink_ratio = _band_energy(pink, 100, 600) / _band_energy(pink, 5000, 5500)
    assert 0.8 < white_ratio < 1.25
    assert pink_ratio > 5


def test_mains_hum_is_a_50_or_60_hz_harmonic_series_and_chirps_sweep():
    hum = synthesize_event("Mains hum", np.random.default_rng(2))
    spectrum = np.abs(np.fft.rfft(hum))
    peak = np.fft.rfftfreq(len(hum), 1 / 16000)[np.argmax(spectrum)]
    assert min(abs(peak - k * f) for f in (50, 60) for k in range(1, 8)) < 1.0
    assert _band_energy(hum, 0, 500) > 100 * _band_energy(hum, 500, 8000)
    chirp = synthesize_event("Chirp tone", np.random.default_rng(4))
    halves = np.array_split(chirp, 2)
    centroids = [
        (np.fft.rfftfreq(len(h), 1 / 16000) * np.abs(np.fft.rfft(h))).sum()
        / np.abs(np.fft.rfft(h)).sum()
        for h in halves
    ]
    assert abs(centroids[0] - centroids[1]) > 100


def test_every_class_has_a_real_looking_mid_and_a_synthesizer():
    for sound in SOUND_CLASSES[1:]:
        assert re.fullmatch(r"/m/0[0-9a-z_]+", sound.mid)
        event = synthesize_event(sound.display_name, np.random.default_rng(0))
        assert event.dtype == np.float32 and np.abs(event).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no synthesizer"):
        synthesize_event("Speech", np.random.default_rng(0))


# ---------------------------------------------------------------- markers and CLI


def test_marker_skips_same_parameters_redoes_others_and_protects_foreign_folders(tmp_path):
    root = tmp_path / "Data"
    assert start_dataset(root, {"seed": 0})
    (root / "file").write_text("x")
    finish_dataset(root, {"seed": 0})
    assert not start_dataset(root, {"seed": 0})
    assert (root / "file").exists()
    assert start_dataset(root, {"seed": 1})
    assert not (root / "file").exists()
    foreign = tmp_path / "LibriSpeech"
    foreign.mkdir()
    (foreign / "real.flac").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not made by make_mini_datasets"):
        start_dataset(foreign, {"seed": 0})
    assert (foreign / "real.flac").exists()


def test_sizes_are_parsed_and_bad_ones_named():
    assert parse_sizes(["covost.train=12", "audioset.short_fraction=0.5"]) == {
        "covost": {"train": 12},
        "audioset": {"short_fraction": 0.5},
    }
    with pytest.raises(ValueError, match="has no size 'trian'"):
        parse_sizes(["covost.trian=12"])
    with pytest.raises(ValueError, match="DATASET.FIELD=VALUE"):
        parse_sizes(["timit.train=3"])


# ---------------------------------------------------------------- the datasets, read back


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    output = tmp_path_factory.mktemp("mini")
    return {
        "librispeech": make_librispeech(output, seed=0, sizes=SMALL_LIBRISPEECH, num_workers=2),
        "audioset": make_audioset(output, seed=0, sizes=SMALL_AUDIOSET, num_workers=2),
        "covost": make_covost(output, seed=0, sizes=SMALL_COVOST, num_workers=2),
    }


def _read_speakers(path):
    rows = {}
    for line in path.read_text().splitlines():
        if not line.startswith(";"):
            speaker, sex, subset, minutes, name = (field.strip() for field in line.split("|"))
            rows[speaker] = (sex, subset, float(minutes), name)
    return rows


def test_librispeech_layout_transcripts_and_speakers(datasets):
    root = datasets["librispeech"]
    header = (root / "SPEAKERS.TXT").read_text().splitlines()
    assert header[0].startswith("; Some pipe(|) separated metadata about all LibriVox readers")
    assert header[11] == ";ID  |SEX| SUBSET           |MINUTES| NAME"
    speakers = _read_speakers(root / "SPEAKERS.TXT")
    counts = {"train-clean-100": 0, "dev-clean": 0, "test-clean": 0, "test-other": 0}
    sentences = {split: set() for split in counts}
    split_speakers = {split: set() for split in counts}
    for transcript_file in root.glob("*/*/*/*.trans.txt"):
        split, speaker, chapter = transcript_file.parts[-4:-1]
        assert transcript_file.name == f"{speaker}-{chapter}.trans.txt"
        split_speakers[split].add(speaker)
        assert speakers[speaker][1] == split
        for line in transcript_file.read_text().splitlines():
            utterance_id, transcript = line.split(" ", 1)
            assert re.fullmatch(rf"{speaker}-{chapter}-\d{{4}}", utterance_id)
            assert re.fullmatch(r"[A-Z']+( [A-Z']+)*", transcript)
            sentences[split].add(transcript)
            audio, rate = sf.read(transcript_file.parent / f"{utterance_id}.flac")
            assert rate == 16000 and audio.ndim == 1
            assert 0.15 < len(audio) / rate / len(transcript.split()) < 1.2  # 110-245 wpm
            counts[split] += 1
    assert counts == {"train-clean-100": 16, "dev-clean": 6, "test-clean": 6, "test-other": 4}
    assert len(split_speakers["train-clean-100"]) == 4
    held_out = set().union(*(split_speakers[s] for s in ("dev-clean", "test-clean", "test-other")))
    assert not split_speakers["train-clean-100"] & held_out
    assert not split_speakers["dev-clean"] & split_speakers["test-clean"]
    assert len(list(root.rglob("*.flac"))) == sum(counts.values())
    lm_corpus = (root / "librispeech-lm-norm.txt").read_text().splitlines()
    assert len(lm_corpus) == 50 and all(re.fullmatch(r"[A-Z' ]+", line) for line in lm_corpus)
    training = sentences["train-clean-100"] | set(lm_corpus)
    for split in ("dev-clean", "test-clean", "test-other"):
        assert not sentences[split] & training, split


def _read_segments(path):
    lines = path.read_text().splitlines()
    rows = list(csv.reader(lines[3:], skipinitialspace=True))
    return lines[:3], rows


def test_audioset_csvs_are_in_the_official_format(datasets):
    root = datasets["audioset"]
    table = list(csv.DictReader(open(root / "class_labels_indices.csv", newline="")))
    assert (root / "class_labels_indices.csv").read_text().splitlines()[4] == (
        '3,/m/02fs_r,"Beep, bleep"'
    )
    assert [row["index"] for row in table] == [str(i) for i in range(len(SOUND_CLASSES))]
    mids = {row["mid"] for row in table}
    for name, expected_rows in (("balanced_train_segments", 16), ("eval_segments", 8)):
        header, rows = _read_segments(root / f"{name}.csv")
        assert header[0].startswith("# Segments csv created ")
        assert header[2] == "# YTID, start_seconds, end_seconds, positive_labels"
        labels = [row[3].split(",") for row in rows]
        assert header[1] == (
            f"# num_ytids={expected_rows}, num_segs={expected_rows}, "
            f"num_unique_labels={len({m for ls in labels for m in ls})}, "
            f"num_positive_labels={sum(map(len, labels))}"
        )
        for line in (root / f"{name}.csv").read_text().splitlines()[3:]:
            assert re.fullmatch(r'[\w-]{11}, \d+\.000, \d+\.000, "/m/[\w,/]+"', line)
        assert all(float(row[2]) - float(row[1]) == 10.0 for row in rows)
        assert all(set(ls) <= mids for ls in labels)
        assert any(len(ls) > 1 for ls in labels)


def test_audioset_clips_mix_naming_schemes_and_some_are_missing(datasets):
    root = datasets["audioset"]
    listed = {}
    for name in ("balanced_train_segments", "eval_segments"):
        for youtube_id, start, end, _ in _read_segments(root / f"{name}.csv")[1]:
            listed[youtube_id] = (name, int(float(start)), int(float(end)))
    files = list((root / "audio").rglob("*.*"))
    found = set()
    for path in files:
        folder = path.parent.name
        if path.suffix == ".wav":
            youtube_id = path.stem
        else:
            youtube_id, start, end = path.stem.rsplit("_", 2)
            assert (int(start), int(end)) == listed[youtube_id][1:]
        assert listed[youtube_id][0] == folder
        audio, rate = sf.read(path)
        assert rate == 16000 and 6.0 <= len(audio) / rate <= 10.0
        assert np.abs(audio).max() < 1.0
        found.add(youtube_id)
    assert {p.suffix for p in files} == {".wav", ".flac"}
    assert 0 < len(listed) - len(found) < len(listed) // 2


def test_covost_tables_and_mp3_clips(datasets):
    root = datasets["covost"]
    with open(root / "covost_v2.en_de.tsv", newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(root / "cv" / "en" / "validated.tsv", newline="") as stream:
        validated = list(csv.DictReader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert list(validated[0]) == (
        "client_id path sentence up_votes down_votes age gender accent locale segment".split()
    )
    assert [sum(r["split"] == s for r in rows) for s in ("train", "dev", "test")] == [40, 4, 4]
    by_path = {row["path"]: row for row in validated}
    clients = {s: {r["client_id"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert not clients["train"] & clients["test"]
    assert all(re.fullmatch(r"[0-9a-f]{128}", c) for c in clients["train"])
    for row in rows[:10] + rows[-4:]:
        assert re.fullmatch(r"common_voice_en_\d+\.mp3", row["path"])
        assert by_path[row["path"]]["sentence"] == row["sentence"]
        assert by_path[row["path"]]["client_id"] == row["client_id"]
        assert row["translation"][0].isupper() and row["translation"].endswith(".")
        info = sf.info(root / "cv" / "en" / "clips" / row["path"])
        assert info.format == "MP3" and info.samplerate == 16000 and info.channels == 1
        assert 0.8 < info.duration < 6.0
    assert len(list((root / "cv" / "en" / "clips").iterdir())) == len(rows)


def test_cli_skips_a_dataset_already_made(datasets, capsys):
    output = datasets["covost"].parent
    marker = datasets["covost"] / COMPLETE_MARKER
    before = marker.stat().st_mtime_ns
    sizes = [f"covost.{k}={v}" for k, v in vars(SMALL_COVOST).items()]
    assert main(["--output", str(output), "--datasets", "covost", "--sizes", *sizes]) == 0
    assert marker.stat().st_mtime_ns == before
    assert "covost:" in capsys.readouterr().out
