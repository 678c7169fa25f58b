"""Each corpus module on a tiny fixture tree mirroring its official layout.

The trees are generated here (short tones under the official names); no corpus file is
committed. Every test checks labels, genders, folds and speaker disjointness.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from trustser.corpora import crema_d, emodb, iemocap, msp_improv, msp_podcast, ravdess
from trustser.corpora._common import CorpusLayoutError
from trustser.manifest import ROLES, UNKNOWN_SPEAKER, Manifest, read_manifest

CLIP = 0.06  # seconds: long enough to be usable, short enough to write hundreds quickly


def assert_speaker_independent(manifest: Manifest) -> None:
    """Every fold: roles non-empty, no known speaker in two roles."""
    assert manifest.folds
    for fold in manifest.folds:
        parts = manifest.split(fold)
        speakers = {role: {u.speaker for u in parts[role]} - {UNKNOWN_SPEAKER} for role in ROLES}
        assert all(parts[role] for role in ROLES), fold.name
        assert not speakers["train"] & speakers["dev"], fold.name
        assert not speakers["train"] & speakers["test"], fold.name
        assert not speakers["dev"] & speakers["test"], fold.name


def genders_of(manifest: Manifest) -> dict[str, str]:
    return {u.speaker: u.gender for u in manifest}


# --------------------------------------------------------------------------- IEMOCAP

IEMOCAP_TURNS = [  # (turn suffix, label)
    ("F000", "neu"),
    ("F001", "exc"),
    ("M000", "hap"),
    ("M001", "sad"),
    ("F002", "ang"),
    ("M002", "fru"),  # dropped
    ("F003", "xxx"),  # dropped
]


def make_iemocap(tone, base: Path) -> Path:
    root = base / "IEMOCAP_full_release"
    for s in range(1, 6):
        session = root / f"Session{s}"
        dialog = f"Ses0{s}F_impro01"
        lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
        transcript = []
        for k, (suffix, label) in enumerate(IEMOCAP_TURNS):
            turn = f"{dialog}_{suffix}"
            lines += [
                f"[{k + 1.25:.4f} - {k + 2.5:.4f}]\t{turn}\t{label}\t[2.5000, 3.0000, 3.5000]",
                "C-E1:\tNeutral state;\t()",
                "A-E1:\tval 3; act 2; dom  3;\t()",
                "",
            ]
            transcript.append(f"{turn} [{k + 1.25:08.4f}-{k + 2.5:08.4f}]: Words of {suffix}.")
            tone(
                str((session / "sentences/wav" / dialog / f"{turn}.wav").relative_to(base)),
                seconds=CLIP,
            )
        evaluation = session / "dialog/EmoEvaluation"
        evaluation.mkdir(parents=True)
        (evaluation / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (evaluation / "Categorical").mkdir()  # per-evaluator folders are ignored
        (evaluation / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07")  # macOS fork
        transcriptions = session / "dialog/transcriptions"
        transcriptions.mkdir(parents=True)
        (transcriptions / f"{dialog}.txt").write_text("\n".join(transcript) + "\n")
    return root


def test_iemocap(tone, tmp_path):
    root = make_iemocap(tone, tmp_path)
    manifest = iemocap.prepare(root, tmp_path / "iemocap.jsonl")
    assert len(manifest) == 5 * 5  # five kept turns per session
    first = manifest["iemocap_Ses01F_impro01_F000"]
    assert first.speaker == "iemocap_Ses01F" and first.gender == "female"
    assert first.emotion == "neutral" and first.session == "Session1"
    assert first.text == "Words of F000."
    assert first.custom["valence"] == 2.5 and first.custom["dominance"] == 3.5
    assert first.duration == pytest.approx(CLIP) and first.sample_rate == 16_000
    # excited → happy; the speaker is the turn's own gender letter, not the dialog's prefix.
    excited = manifest["iemocap_Ses01F_impro01_F001"]
    assert excited.emotion == "happy" and excited.custom["label"] == "exc"
    male = manifest["iemocap_Ses01F_impro01_M000"]
    assert male.speaker == "iemocap_Ses01M" and male.gender == "male" and male.emotion == "happy"
    assert Counter(u.emotion for u in manifest) == {"neutral": 5, "happy": 10, "sad": 5, "angry": 5}
    assert "iemocap_Ses01F_impro01_M002" not in manifest.by_id  # frustration is left out
    assert len(genders_of(manifest)) == 10
    assert [f.test for f in manifest.folds] == [(f"Session{s}",) for s in range(1, 6)]
    assert [f.dev for f in manifest.folds] == [
        ("Session2",),
        ("Session3",),
        ("Session4",),
        ("Session5",),
        ("Session1",),
    ]
    assert_speaker_independent(manifest)
    assert read_manifest(tmp_path / "iemocap.jsonl") == manifest


def test_iemocap_layout_errors(tone, tmp_path):
    root = make_iemocap(tone, tmp_path)
    with pytest.raises(
        CorpusLayoutError, match=r"IEMOCAP: \['Session1', 'Session2'.*IEMOCAP_full_release"
    ):
        iemocap.prepare(tmp_path)
    (root / "Session3").rename(root / "session3")
    with pytest.raises(CorpusLayoutError, match=r"\['Session3'\] not found"):
        iemocap.prepare(root)


def test_parse_iemocap_evaluation_keeps_all_labels(tone, tmp_path):
    root = make_iemocap(tone, tmp_path)
    rows = iemocap.parse_evaluation(root / "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt")
    assert [r.label for r in rows] == [label for _, label in IEMOCAP_TURNS]
    assert rows[0].start == 1.25 and rows[0].end == 2.5 and rows[0].vad == (2.5, 3.0, 3.5)


# --------------------------------------------------------------------------- CREMA-D

CREMA_ACTORS = {str(a): ("Male" if a % 2 else "Female") for a in range(1001, 1011)}


def make_crema_d(tone, base: Path) -> Path:
    root = base / "CREMA-D"
    root.mkdir()
    rows = ["ActorID,Age,Sex,Race,Ethnicity"]
    rows += [f"{actor},30,{sex},Caucasian,Not Hispanic" for actor, sex in CREMA_ACTORS.items()]
    (root / "VideoDemographics.csv").write_text("\ufeff" + "\n".join(rows) + "\n")  # with a BOM
    for actor in CREMA_ACTORS:
        for name in (
            "DFA_ANG_XX",
            "IEO_HAP_HI",
            "TIE_NEU_XX",
            "MTI_SAD_XX",
            "IOM_DIS_XX",
            "IWW_FEA_LO",
        ):
            tone(f"CREMA-D/AudioWAV/{actor}_{name}.wav", seconds=CLIP)
    (root / "AudioWAV" / "1076_MTI_SAD_XX.wav").write_bytes(b"RIFF")  # the known-bad file
    return root


def test_crema_d(tone, tmp_path):
    manifest = crema_d.prepare(make_crema_d(tone, tmp_path))
    assert len(manifest) == 10 * 4
    clip = manifest["crema_d_1001_DFA_ANG_XX"]
    assert clip.speaker == "crema_d_1001" and clip.gender == "male" and clip.emotion == "angry"
    assert clip.text == "Don't forget a jacket" and clip.custom == {
        "sentence": "DFA",
        "intensity": "XX",
    }
    assert manifest["crema_d_1002_IEO_HAP_HI"].gender == "female"
    assert Counter(u.emotion for u in manifest) == {
        "neutral": 10,
        "happy": 10,
        "sad": 10,
        "angry": 10,
    }
    assert not any("DIS" in u.id or "FEA" in u.id or "1076" in u.id for u in manifest)
    # Five consecutive blocks of the sorted actors; dev is the next block.
    assert [f.test for f in manifest.folds] == [
        (f"crema_d_{a}", f"crema_d_{a + 1}") for a in range(1001, 1011, 2)
    ]
    assert manifest.folds[0].dev == ("crema_d_1003", "crema_d_1004")
    assert_speaker_independent(manifest)


def test_crema_d_needs_every_actor_in_the_demographics(tone, tmp_path):
    root = make_crema_d(tone, tmp_path)
    lines = (root / "VideoDemographics.csv").read_text().splitlines()
    (root / "VideoDemographics.csv").write_text("\n".join(lines[:-2]) + "\n")  # drop 1009, 1010
    with pytest.raises(CorpusLayoutError, match=r"actor\(s\) \['1009', '1010'\].*no row"):
        crema_d.prepare(root)
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Gender\n1001,30,Male\n")
    with pytest.raises(CorpusLayoutError, match="expected ActorID and Sex"):
        crema_d.prepare(root)
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex\n1001,30,X\n")
    with pytest.raises(CorpusLayoutError, match="line 2: Sex='X'"):
        crema_d.prepare(root)
    (root / "VideoDemographics.csv").unlink()
    with pytest.raises(CorpusLayoutError, match=r"VideoDemographics\.csv"):
        crema_d.prepare(root)


# --------------------------------------------------------------------------- MSP-Improv


def _improv_turns():
    for session in range(1, 7):
        for gender in "FM":
            for sentence, condition, turn, label in (
                ("S01A", "P", "FM01", "A"),
                ("S02H", "R", "FM02", "H"),
                ("S03S", "S", "MF01", "N"),
                ("S04N", "T", "MF02", "S"),
                ("S05A", "P", "FM03", "O"),  # other: dropped
                ("S06H", "P", "FM04", "X"),  # no agreement: dropped
            ):
                yield f"{sentence}-{gender}{session:02d}-{condition}-{turn}", session, label


def make_msp_improv(
    tone, base: Path, *, audio_folder: bool = False, label_name: str = "Evaluation.txt"
) -> Path:
    root = base / "MSP-IMPROV"
    audio = root / "Audio" if audio_folder else root
    lines = []
    for turn_id, session, label in _improv_turns():
        lines.append(
            f"UTD-IMPROV-{turn_id}.avi; {label}; A:2.500000; V:3.250000; D:NaN ; N:4.000000;"
        )
        lines.append("rater0001; Angry; Frustrated; A:2.0; V:3.0; D:3.0 ; N:4.0;")
        lines.append("")
        sentence, _, condition, _ = turn_id.split("-")
        wav = audio / f"session{session}" / sentence / condition / f"MSP-IMPROV-{turn_id}.wav"
        tone(str(wav.relative_to(base)), seconds=CLIP)
    (root / label_name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(
    ("audio_folder", "label_name"), [(False, "Evaluation.txt"), (True, "Evalution.txt")]
)
def test_msp_improv(tone, tmp_path, audio_folder, label_name):
    root = make_msp_improv(tone, tmp_path, audio_folder=audio_folder, label_name=label_name)
    manifest = msp_improv.prepare(root)
    assert len(manifest) == 6 * 2 * 4
    clip = manifest["msp_improv_MSP-IMPROV-S01A-F01-P-FM01"]
    assert (
        clip.speaker == "msp_improv_F01" and clip.gender == "female" and clip.session == "session1"
    )
    assert clip.emotion == "angry"
    assert clip.custom == {
        "sentence": "S01A",
        "target_emotion": "angry",
        "condition": "P",
        "activation": 2.5,
        "valence": 3.25,
        "naturalness": 4.0,
    }
    male = manifest["msp_improv_MSP-IMPROV-S03S-M04-S-MF01"]
    assert male.speaker == "msp_improv_M04" and male.gender == "male" and male.emotion == "neutral"
    assert male.session == "session4"
    assert Counter(u.emotion for u in manifest) == {
        "neutral": 12,
        "happy": 12,
        "sad": 12,
        "angry": 12,
    }
    assert len(genders_of(manifest)) == 12
    assert len(manifest.folds) == 6
    assert manifest.folds[5].test == ("session6",) and manifest.folds[5].dev == ("session1",)
    assert_speaker_independent(manifest)


def test_msp_improv_layout_errors(tone, tmp_path):
    root = make_msp_improv(tone, tmp_path)
    (root / "Evaluation.txt").rename(root / "labels.txt")
    with pytest.raises(CorpusLayoutError, match=r"Evaluation\.txt' or .*Evalution\.txt"):
        msp_improv.prepare(root)
    (root / "labels.txt").rename(root / "Evaluation.txt")
    (root / "session6").rename(root / "extra")
    with pytest.raises(CorpusLayoutError, match=r"found \['session1', .*'session5'\]"):
        msp_improv.prepare(root)


# --------------------------------------------------------------------------- MSP-Podcast

PODCAST_ROWS = [  # FileName stem, EmoClass, SpkrID, Gender, Split_Set
    ("MSP-PODCAST_0001_0001", "N", "10", "Female", "Train"),
    ("MSP-PODCAST_0001_0002", "H", "10", "Female", "Train"),
    ("MSP-PODCAST_0001_0003", "A", "11", "Male", "Train"),
    ("MSP-PODCAST_0002_0001", "S", "12", "Male", "Development"),
    ("MSP-PODCAST_0002_0002", "N", "13", "Female", "Development"),
    ("MSP-PODCAST_0003_0001", "A", "14", "Female", "Test1"),
    ("MSP-PODCAST_0003_0002", "H", "15", "Male", "Test1"),
    ("MSP-PODCAST_0004_0001", "S", "Unknown", "Male", "Train"),  # unknown speaker: kept
    ("MSP-PODCAST_0004_0002", "N", "Unknown", "Female", "Test1"),  # unknown speaker: kept
    ("MSP-PODCAST_0005_0001", "N", "16", "Unknown", "Train"),  # unknown gender: dropped
    ("MSP-PODCAST_0006_0001", "U", "10", "Female", "Train"),  # surprise: dropped
    ("MSP-PODCAST_0006_0002", "X", "10", "Female", "Train"),  # no agreement: dropped
    ("MSP-PODCAST_0007_0001", "A", "17", "Male", "Test2"),  # not in the standard split
]


def make_msp_podcast(tone, base: Path, *, old_names: bool = False) -> Path:
    root = base / "MSP-Podcast"
    (root / "Labels").mkdir(parents=True)
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    for stem, emo, speaker, gender, split in PODCAST_ROWS:
        if old_names and split == "Development":
            split = "Validation"
        lines.append(f"{stem}.wav,{emo},4.2,3.8,4.0,{speaker},{gender},{split}")
        tone(f"MSP-Podcast/Audios/{stem}.wav", seconds=CLIP)
    name = "labels_concensus.csv" if old_names else "labels_consensus.csv"
    (root / "Labels" / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("old_names", [False, True])
def test_msp_podcast(tone, tmp_path, old_names):
    manifest = msp_podcast.prepare(make_msp_podcast(tone, tmp_path, old_names=old_names))
    assert len(manifest) == 9
    clip = manifest["msp_podcast_MSP-PODCAST_0001_0003"]
    assert clip.speaker == "msp_podcast_11" and clip.gender == "male" and clip.emotion == "angry"
    assert clip.split == "Train"
    assert clip.custom == {"activation": 4.2, "valence": 3.8, "dominance": 4.0}
    assert (
        manifest["msp_podcast_MSP-PODCAST_0002_0001"].split == "Development"
    )  # also from Validation
    anonymous = manifest["msp_podcast_MSP-PODCAST_0004_0001"]
    assert anonymous.speaker == UNKNOWN_SPEAKER and not anonymous.speaker_known
    assert {u.split for u in manifest} == {"Train", "Development", "Test1"}
    (fold,) = manifest.folds
    assert (fold.name, fold.by, fold.train, fold.dev, fold.test) == (
        "standard",
        "split",
        ("Train",),
        ("Development",),
        ("Test1",),
    )
    parts = manifest.split(fold)
    assert [len(parts[r]) for r in ROLES] == [4, 2, 3]
    assert_speaker_independent(manifest)  # unknown speakers sit in train and test: allowed


def test_msp_podcast_label_file_checks(tone, tmp_path):
    root = make_msp_podcast(tone, tmp_path)
    label_file = root / "Labels" / "labels_consensus.csv"
    label_file.write_text("FileName,EmoClass\nMSP-PODCAST_0001_0001.wav,N\n")
    with pytest.raises(
        CorpusLayoutError, match=r"lacks column\(s\) \['SpkrID', 'Gender', 'Split_Set'\]"
    ):
        msp_podcast.prepare(root)
    label_file.write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0001.wav,N,1,1,1,10,Woman,Train\n"
    )
    with pytest.raises(CorpusLayoutError, match="line 2: Gender='Woman'"):
        msp_podcast.prepare(root)


# --------------------------------------------------------------------------- RAVDESS


def make_ravdess(tone, base: Path, *, nested: bool = False) -> Path:
    root = base / "ravdess"
    top = "ravdess/Audio_Speech_Actors_01-24" if nested else "ravdess"
    for actor in range(1, 25):
        for emotion, intensity, statement in (
            ("01", "01", "01"),
            ("02", "01", "02"),
            ("05", "02", "02"),
            ("03", "01", "01"),
        ):
            name = f"03-01-{emotion}-{intensity}-{statement}-01-{actor:02d}.wav"
            tone(f"{top}/Actor_{actor:02d}/{name}", seconds=CLIP)
        tone(f"{top}/Actor_{actor:02d}/03-02-04-01-01-01-{actor:02d}.wav", seconds=CLIP)  # song
    return root


@pytest.mark.parametrize("nested", [False, True])
def test_ravdess(tone, tmp_path, nested):
    manifest = ravdess.prepare(make_ravdess(tone, tmp_path, nested=nested))
    assert len(manifest) == 24 * 3  # neutral, angry, happy; calm and song left out
    assert Counter(u.emotion for u in manifest) == {"neutral": 24, "angry": 24, "happy": 24}
    clip = manifest["ravdess_03-01-05-02-02-01-01"]
    assert clip.speaker == "ravdess_01" and clip.gender == "male"  # odd actor = male
    assert clip.emotion == "angry" and clip.text == "Dogs are sitting by the door"
    assert clip.custom == {"intensity": "strong", "repetition": 1}
    assert manifest["ravdess_03-01-01-01-01-01-02"].gender == "female"  # even actor = female
    assert not any(u.id.startswith("ravdess_03-01-02") for u in manifest)  # calm is dropped
    assert len(manifest.folds) == 6
    for fold in manifest.folds:
        test_genders = Counter(genders_of(manifest)[s] for s in fold.test)
        assert test_genders == {"female": 2, "male": 2}
    assert_speaker_independent(manifest)


def test_ravdess_layout_errors(tone, tmp_path):
    with pytest.raises(CorpusLayoutError, match="no Actor_XX folders"):
        ravdess.prepare(tmp_path)
    tone("rav/Actor_01/03-01-01-01-01-01-02.wav", seconds=CLIP)
    with pytest.raises(CorpusLayoutError, match="sit in another actor's folder"):
        ravdess.prepare(tmp_path / "rav")


# --------------------------------------------------------------------------- EmoDB (fixture)


def make_emodb(tone, base: Path) -> Path:
    for speaker in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16"):
        for code in ("a01Fa", "a02Nb", "b01Tc", "b02Wa", "a04Ld"):  # L (boredom) is dropped
            tone(f"emodb/wav/{speaker}{code}.wav", seconds=CLIP)
    tone("emodb/wav/99a01Fa.wav", seconds=CLIP)  # not a documented speaker
    return base / "emodb"


def test_emodb_fixture(tone, tmp_path):
    manifest = emodb.prepare(make_emodb(tone, tmp_path))
    assert len(manifest) == 40
    clip = manifest["emodb_03a01Fa"]
    assert clip.speaker == "emodb_03" and clip.gender == "male" and clip.emotion == "happy"
    assert clip.text == "a01"
    assert (
        manifest["emodb_08b02Wa"].gender == "female"
        and manifest["emodb_08b02Wa"].emotion == "angry"
    )
    for fold in manifest.folds:
        assert Counter(genders_of(manifest)[s] for s in fold.test) == {"female": 1, "male": 1}
    assert_speaker_independent(manifest)


def test_emodb_needs_the_wav_folder(tmp_path):
    with pytest.raises(CorpusLayoutError, match=r"EmoDB: expected the directory .*wav"):
        emodb.prepare(tmp_path)
