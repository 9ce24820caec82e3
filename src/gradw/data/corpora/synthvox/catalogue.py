"""The synthvox speaker catalogue: who speaks, from which package, in which split.

Every speaker is one real person (see :mod:`gradw.data.corpora.synthvox.voices` for how each
engine makes their audio). The split of a speaker is fixed here, so train, validation and test
speakers are disjoint whatever a preset picks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "Speaker"]

_LIC_MBROLA = "MBROLA voice licence (non-free: research use, no sale, do not redistribute); mbrola AGPL-3+"
_LIC_FESTIVAL = (
    "Festival/Festvox voice licence (BSD-like, LGPL-2.1+ or GPL; see the Debian package copyright)"
)
_LIC_FLITE = "Flite (BSD-like)"
_LIC_ASTERISK = "CC-BY-SA-3.0 (Asterisk core sound prompts)"
_LIC_FILLETS = "GPL-2+ (Fish Fillets NG data)"
_LIC_KTUBERLING = "GPL-2+ (KTuberling data)"


@dataclass(frozen=True)
class Speaker:
    """One corpus speaker.

    Attributes:
        id: speaker id used in ``utt2spk`` (``<engine>-<voice>``).
        engine: ``mbrola``, ``festival``, ``flite``, ``asterisk``, ``fillets`` or ``ktuberling``.
        voice: engine-specific voice name (MBROLA database, Festival voice, Flite voice,
            Asterisk sound folder, Fillets ``<lang>-<character>``, KTuberling language folder).
        lang: text language (ISO 639-1 as wordfreq spells it) or language of the recordings.
        gender: ``m`` or ``f``.
        split: ``train``, ``val`` or ``test``.
        package: the Debian package that provides the voice or recordings.
        licence: licence of the voice data.
        real: the audio is actual recordings rather than synthesis from a real speaker's units.
        espeak_voice: espeak-ng front-end voice (MBROLA only).
        encoding: text encoding of the Festival script (Festival only).
    """

    id: str
    engine: str
    voice: str
    lang: str
    gender: str
    split: str
    package: str
    licence: str
    real: bool = False
    espeak_voice: str = ""
    encoding: str = "utf-8"


def _mb(db: str, lang: str, gender: str, split: str) -> Speaker:
    return Speaker(
        f"mbrola-{db}",
        "mbrola",
        db,
        lang,
        gender,
        split,
        f"mbrola-{db}",
        _LIC_MBROLA,
        espeak_voice=f"mb-{db}",
    )


def _fest(voice: str, lang: str, gender: str, split: str, package: str, encoding: str = "utf-8") -> Speaker:
    short = (
        voice.replace("_diphone", "").replace("_clunits", "").replace("_arctic_hts", "").replace("_hts", "")
    )
    return Speaker(
        f"festival-{short}", "festival", voice, lang, gender, split, package, _LIC_FESTIVAL, encoding=encoding
    )


# voices, their sex and their split. Excluded: hb1, nl1, nz1, bz1, rab, pc, lp.
_MBROLA_TABLE = """
af1 af m train  ar1 ar m train  br1 pt m train  br2 pt f train  br3 pt m train  br4 pt f test
ca1 fr m test   ca2 fr m train  cn1 zh f train  cr1 hr m test   cz1 cs f train  cz2 cs m train
de1 de f train  de2 de m test   de3 de f test   de4 de m val    de5 de f test   de6 de m train
de8 de m train  ee1 et m train  en1 en m test   es1 es m train  es2 es m test   es3 es f train
es4 es m train  fr1 fr m train  fr2 fr f test   fr4 fr f test   fr5 fr m train  fr6 fr m val
fr7 fr m train  gr1 el m train  gr2 el m train  hb2 he f train  hn1 ko m train  ic1 is m train
in1 hi m train  in2 hi f train  ir1 fa m train  it1 it m test   it3 it m train  it4 it f val
jp1 ja m train  jp2 ja f train  jp3 ja f train  la1 la m train  lt2 lt m train  ma1 ms f train
mx1 es m train  nl2 nl m test   nl3 nl f val    pl1 pl f test   pt1 pt f val    ro1 ro m test
sw1 sv m val    sw2 sv f test   tl1 te f train  tr1 tr m train  us1 en f test   us2 en m train
"""


def _mbrola_catalogue() -> list[Speaker]:
    tokens = _MBROLA_TABLE.split()
    return [_mb(*tokens[i : i + 4]) for i in range(0, len(tokens), 4)]


def _ktuberling(lang: str, gender: str) -> Speaker:
    sid, package = f"ktuberling-{lang}", "ktuberling-data"
    return Speaker(sid, "ktuberling", lang, lang, gender, "val", package, _LIC_KTUBERLING, real=True)


#: Every speaker of the recipe, in a fixed order (83: 60 MBROLA, 11 Festival, 2 Flite, 10 real).
#: The four KTuberling voices (one person per language folder: 5-word excerpts of one folder score
#: 0.76-0.89 mean cosine with CAM++, of two folders at most 0.41) are validation speakers, so that
#: validation has recordings as the test has; their sex is estimated from the median F0 of their
#: words (nn 194 Hz, uk 241 Hz: f; lt 168 Hz, fr 166 Hz: m).
CATALOGUE: tuple[Speaker, ...] = (
    *_mbrola_catalogue(),
    _fest("kal_diphone", "en", "m", "train", "festvox-kallpc16k"),
    _fest("ked_diphone", "en", "m", "train", "festvox-kdlpc16k"),
    _fest("upc_ca_ona_hts", "ca", "f", "train", "festvox-ca-ona-hts"),
    _fest("czech_dita", "cs", "f", "train", "festvox-czech-dita", "iso-8859-2"),
    _fest("czech_krb", "cs", "m", "train", "festvox-czech-krb", "iso-8859-2"),
    _fest("czech_ph", "cs", "m", "train", "festvox-czech-ph", "iso-8859-2"),
    _fest("hy_fi_mv_diphone", "fi", "m", "train", "festvox-suopuhe-mv", "iso-8859-1"),
    _fest("msu_ru_nsh_clunits", "ru", "m", "train", "festvox-ru"),
    _fest("cmu_us_slt_arctic_hts", "en", "f", "test", "festvox-us-slt-hts"),
    _fest("czech_machac", "cs", "m", "test", "festvox-czech-machac", "iso-8859-2"),
    _fest("suo_fi_lj_diphone", "fi", "f", "test", "festvox-suopuhe-lj", "iso-8859-1"),
    Speaker("flite-rms", "flite", "rms", "en", "m", "train", "flite", _LIC_FLITE),
    Speaker("flite-awb", "flite", "awb", "en", "m", "test", "flite", _LIC_FLITE),
    Speaker(
        "fillets-cs-m", "fillets", "cs-m", "cs", "f", "train", "fillets-ng-data-cs", _LIC_FILLETS, real=True
    ),
    Speaker(
        "fillets-cs-v", "fillets", "cs-v", "cs", "m", "train", "fillets-ng-data-cs", _LIC_FILLETS, real=True
    ),
    Speaker(
        "asterisk-allison",
        "asterisk",
        "en_US_f_Allison",
        "en",
        "f",
        "test",
        "asterisk-core-sounds-en-g722",
        _LIC_ASTERISK,
        real=True,
    ),
    Speaker(
        "asterisk-june",
        "asterisk",
        "fr_CA_f_June",
        "fr",
        "f",
        "test",
        "asterisk-core-sounds-fr-g722",
        _LIC_ASTERISK,
        real=True,
    ),
    Speaker(
        "asterisk-carlo",
        "asterisk",
        "it_IT_m_Carlo",
        "it",
        "m",
        "test",
        "asterisk-core-sounds-it-g722",
        _LIC_ASTERISK,
        real=True,
    ),
    Speaker(
        "fillets-nl-m", "fillets", "nl-m", "nl", "f", "test", "fillets-ng-data-nl", _LIC_FILLETS, real=True
    ),
    _ktuberling("nn", "f"),
    _ktuberling("uk", "f"),
    _ktuberling("lt", "m"),
    _ktuberling("fr", "m"),
)
