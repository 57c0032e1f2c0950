"""A small English-German grammar with an aligned lexicon, for the mini CoVoST.

Sentences are built as clauses (subject, verb, object, place, time) and rendered in both
languages, so every translation is right by construction: German articles follow gender and
case, adjectives take weak/mixed/strong endings, verbs agree with their subject, the finite verb
stands second (after a fronted time adverb too), infinitives after a modal go to the end, and
"in dem" contracts to "im".

Example:
    >>> clause = Clause(
    ...     subject=NounPhrase(noun("man"), "the", adjective("old")),
    ...     verb=verb("buy"),
    ...     obj=NounPhrase(noun("apple"), "a", adjective("red")),
    ...     time=TIMES[0],
    ... )
    >>> english(clause), german(clause)
    ('Today the old man buys a red apple.', 'Heute kauft der alte Mann einen roten Apfel.')
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NOMINATIVE, ACCUSATIVE, DATIVE = "nom", "acc", "dat"


@dataclass(frozen=True)
class Noun:
    """English and German forms; German gender "m", "f" or "n"; kind selects which verbs fit."""

    english: str
    english_plural: str
    german: str
    german_plural: str
    gender: str
    kind: str


@dataclass(frozen=True)
class Adjective:
    """An adjective, its German stem, and the noun kinds it sensibly describes."""

    english: str
    german_stem: str
    kinds: tuple[str, ...] = ("person", "animal", "thing", "place")


@dataclass(frozen=True)
class Verb:
    """German present forms for 1st singular, 3rd singular and plural (= infinitive)."""

    english: str
    english_third: str
    german_first: str
    german_third: str
    german_plural: str
    object_kinds: tuple[str, ...] = ()
    takes_with: bool = False
    after_modal: bool = True
    subject_kinds: tuple[str, ...] = ("person", "animal")

    @property
    def transitive(self) -> bool:
        return bool(self.object_kinds)


@dataclass(frozen=True)
class Word:
    english: str
    german: str


@dataclass(frozen=True)
class Pronoun:
    english: str
    german: str
    person: int
    plural: bool


NOUNS = (
    Noun("man", "men", "Mann", "Männer", "m", "person"),
    Noun("woman", "women", "Frau", "Frauen", "f", "person"),
    Noun("child", "children", "Kind", "Kinder", "n", "person"),
    Noun("teacher", "teachers", "Lehrer", "Lehrer", "m", "person"),
    Noun("girl", "girls", "Mädchen", "Mädchen", "n", "person"),
    Noun("dog", "dogs", "Hund", "Hunde", "m", "animal"),
    Noun("cat", "cats", "Katze", "Katzen", "f", "animal"),
    Noun("bird", "birds", "Vogel", "Vögel", "m", "animal"),
    Noun("horse", "horses", "Pferd", "Pferde", "n", "animal"),
    Noun("book", "books", "Buch", "Bücher", "n", "thing"),
    Noun("ball", "balls", "Ball", "Bälle", "m", "thing"),
    Noun("apple", "apples", "Apfel", "Äpfel", "m", "thing"),
    Noun("car", "cars", "Auto", "Autos", "n", "thing"),
    Noun("letter", "letters", "Brief", "Briefe", "m", "thing"),
    Noun("flower", "flowers", "Blume", "Blumen", "f", "thing"),
    Noun("cup", "cups", "Tasse", "Tassen", "f", "thing"),
    Noun("bag", "bags", "Tasche", "Taschen", "f", "thing"),
    Noun("garden", "gardens", "Garten", "Gärten", "m", "place"),
    Noun("house", "houses", "Haus", "Häuser", "n", "place"),
    Noun("kitchen", "kitchens", "Küche", "Küchen", "f", "place"),
    Noun("park", "parks", "Park", "Parks", "m", "place"),
    Noun("city", "cities", "Stadt", "Städte", "f", "place"),
    Noun("school", "schools", "Schule", "Schulen", "f", "place"),
)
ADJECTIVES = (
    Adjective("big", "groß"),
    Adjective("small", "klein"),
    Adjective("old", "alt"),
    Adjective("young", "jung", ("person", "animal")),
    Adjective("new", "neu", ("thing", "place")),
    Adjective("red", "rot", ("thing", "place")),
    Adjective("green", "grün", ("thing", "place")),
    Adjective("good", "gut"),
)
_ANY = ("person", "animal", "thing")
VERBS = (
    Verb("see", "sees", "sehe", "sieht", "sehen", _ANY),
    Verb("find", "finds", "finde", "findet", "finden", _ANY),
    Verb("like", "likes", "mag", "mag", "mögen", _ANY, after_modal=False),
    Verb("have", "has", "habe", "hat", "haben", ("animal", "thing")),
    Verb("buy", "buys", "kaufe", "kauft", "kaufen", ("animal", "thing"), subject_kinds=("person",)),
    Verb("carry", "carries", "trage", "trägt", "tragen", ("thing",)),
    Verb("sleep", "sleeps", "schlafe", "schläft", "schlafen"),
    Verb("play", "plays", "spiele", "spielt", "spielen", takes_with=True),
    Verb("wait", "waits", "warte", "wartet", "warten", takes_with=True),
)
MODALS = (
    Verb("want", "wants", "will", "will", "wollen"),
    Verb("can", "can", "kann", "kann", "können"),
)
PRONOUNS = (
    Pronoun("I", "ich", 1, False),
    Pronoun("he", "er", 3, False),
    Pronoun("she", "sie", 3, False),
    Pronoun("we", "wir", 1, True),
    Pronoun("they", "sie", 3, True),
)
TIMES = (Word("today", "heute"), Word("now", "jetzt"), Word("tomorrow", "morgen"))
NUMBERS = (Word("two", "zwei"), Word("three", "drei"))

_DEFINITE = {
    NOMINATIVE: {"m": "der", "f": "die", "n": "das", "pl": "die"},
    ACCUSATIVE: {"m": "den", "f": "die", "n": "das", "pl": "die"},
    DATIVE: {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
_INDEFINITE = {
    NOMINATIVE: {"m": "ein", "f": "eine", "n": "ein"},
    ACCUSATIVE: {"m": "einen", "f": "eine", "n": "ein"},
    DATIVE: {"m": "einem", "f": "einer", "n": "einem"},
}
# Adjective endings after a definite article (weak), after "ein" (mixed), and with no article.
_WEAK = {
    NOMINATIVE: {"m": "e", "f": "e", "n": "e", "pl": "en"},
    ACCUSATIVE: {"m": "en", "f": "e", "n": "e", "pl": "en"},
    DATIVE: {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
_MIXED = {
    NOMINATIVE: {"m": "er", "f": "e", "n": "es"},
    ACCUSATIVE: {"m": "en", "f": "e", "n": "es"},
    DATIVE: {"m": "en", "f": "en", "n": "en"},
}
_STRONG_PLURAL = {NOMINATIVE: "e", ACCUSATIVE: "e", DATIVE: "en"}


def _lookup(items, english: str):
    for item in items:
        if item.english == english:
            return item
    raise KeyError(f"{english!r} is not in the lexicon")


def noun(english: str) -> Noun:
    return _lookup(NOUNS, english)


def adjective(english: str) -> Adjective:
    return _lookup(ADJECTIVES, english)


def verb(english: str) -> Verb:
    return _lookup(VERBS + MODALS, english)


@dataclass(frozen=True)
class NounPhrase:
    """``determiner`` is "the", "a", or a number word ("two", "three": plural, no article).

    Example:
        >>> german_noun_phrase(NounPhrase(noun("dog"), "two", adjective("big")), DATIVE)
        'zwei großen Hunden'
    """

    noun: Noun
    determiner: str
    adjective: Adjective | None = None
    plural: bool = False

    def __post_init__(self) -> None:
        if self.determiner in {number.english for number in NUMBERS} and not self.plural:
            object.__setattr__(self, "plural", True)
        if self.determiner == "a" and self.plural:
            raise ValueError("'a' cannot determine a plural noun phrase")


@dataclass(frozen=True)
class Clause:
    """One sentence. ``subject`` is a noun phrase or a pronoun; ``modal`` puts ``verb`` in the
    infinitive; ``prepositional_object`` is governed by ``preposition`` ("in" or "with")."""

    subject: NounPhrase | Pronoun
    verb: Verb
    obj: NounPhrase | None = None
    modal: Verb | None = None
    prepositional_object: NounPhrase | None = None
    preposition: str = "in"
    time: Word | None = None


def english_noun_phrase(phrase: NounPhrase) -> str:
    head = phrase.noun.english_plural if phrase.plural else phrase.noun.english
    words = [phrase.adjective.english, head] if phrase.adjective else [head]
    determiner = phrase.determiner
    if determiner == "a" and words[0][0] in "aeiou":
        determiner = "an"
    return " ".join([determiner, *words])


def german_noun_phrase(phrase: NounPhrase, case: str) -> str:
    gender = "pl" if phrase.plural else phrase.noun.gender
    head = phrase.noun.german_plural if phrase.plural else phrase.noun.german
    if phrase.plural and case == DATIVE and not head.endswith(("n", "s")):
        head += "n"
    if phrase.determiner == "the":
        article, ending = _DEFINITE[case][gender], _WEAK[case][gender]
    elif phrase.determiner == "a":
        article, ending = _INDEFINITE[case][gender], _MIXED[case][gender]
    else:
        article = _lookup(NUMBERS, phrase.determiner).german
        ending = _STRONG_PLURAL[case]
    words = [article]
    if phrase.adjective:
        words.append(phrase.adjective.german_stem + ending)
    return " ".join([*words, head])


def _person(subject: NounPhrase | Pronoun) -> tuple[int, bool]:
    if isinstance(subject, Pronoun):
        return subject.person, subject.plural
    return 3, subject.plural


def _english_finite(verb_: Verb, subject: NounPhrase | Pronoun) -> str:
    person, plural = _person(subject)
    return verb_.english_third if (person == 3 and not plural) else verb_.english


def _german_finite(verb_: Verb, subject: NounPhrase | Pronoun) -> str:
    person, plural = _person(subject)
    if plural:
        return verb_.german_plural
    return verb_.german_first if person == 1 else verb_.german_third


def _german_prepositional(preposition: str, phrase: NounPhrase) -> str:
    german_phrase = german_noun_phrase(phrase, DATIVE)
    if preposition == "in" and german_phrase.startswith("dem "):
        return "im " + german_phrase.removeprefix("dem ")
    return {"in": "in ", "with": "mit "}[preposition] + german_phrase


def _sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def english(clause: Clause) -> str:
    """The English sentence, capitalised, with a final full stop."""
    subject = (
        clause.subject.english
        if isinstance(clause.subject, Pronoun)
        else english_noun_phrase(clause.subject)
    )
    words = [clause.time.english] if clause.time else []
    words.append(subject)
    if clause.modal:
        words.append(_english_finite(clause.modal, clause.subject))
        if clause.modal.english == "want":
            words.append("to")
        words.append(clause.verb.english)
    else:
        words.append(_english_finite(clause.verb, clause.subject))
    if clause.obj:
        words.append(english_noun_phrase(clause.obj))
    if clause.prepositional_object:
        words += [clause.preposition, english_noun_phrase(clause.prepositional_object)]
    return _sentence(words)


def german(clause: Clause) -> str:
    """The German sentence: verb second, infinitive last, nouns capitalised, a full stop."""
    subject = (
        clause.subject.german
        if isinstance(clause.subject, Pronoun)
        else german_noun_phrase(clause.subject, NOMINATIVE)
    )
    finite = _german_finite(clause.modal or clause.verb, clause.subject)
    words = [clause.time.german, finite, subject] if clause.time else [subject, finite]
    if clause.obj:
        words.append(german_noun_phrase(clause.obj, ACCUSATIVE))
    if clause.prepositional_object:
        words.append(_german_prepositional(clause.preposition, clause.prepositional_object))
    if clause.modal:
        words.append(clause.verb.german_plural)
    return _sentence(words)


def _noun_phrase(rng: random.Random, kinds: tuple[str, ...], allow_plural: bool) -> NounPhrase:
    head = rng.choice([n for n in NOUNS if n.kind in kinds])
    adjectives = [a for a in ADJECTIVES if head.kind in a.kinds]
    modifier = rng.choice(adjectives) if rng.random() < 0.45 else None
    choices = ["the", "the", "a"] + (["the-plural", "two", "three"] if allow_plural else [])
    determiner = rng.choice(choices)
    if determiner == "the-plural":
        return NounPhrase(head, "the", modifier, plural=True)
    return NounPhrase(head, determiner, modifier)


def random_clause(rng: random.Random) -> Clause:
    """A random clause of the grammar (any template), not yet checked for length."""
    chosen = rng.choice(VERBS)
    if rng.random() < 0.3:
        subject = rng.choice(PRONOUNS)
    else:
        subject = _noun_phrase(rng, chosen.subject_kinds, allow_plural=True)
    obj = prepositional_object = None
    preposition = "in"
    if chosen.transitive:
        obj = _noun_phrase(rng, chosen.object_kinds, allow_plural=True)
    elif rng.random() < 0.8:
        preposition = rng.choice(["in", "in", "with"] if chosen.takes_with else ["in"])
        kinds = ("place",) if preposition == "in" else ("person", "animal", "thing")
        prepositional_object = _noun_phrase(rng, kinds, allow_plural=preposition == "with")
    modal = rng.choice(MODALS) if chosen.after_modal and rng.random() < 0.3 else None
    time = rng.choice(TIMES) if rng.random() < 0.35 else None
    return Clause(subject, chosen, obj, modal, prepositional_object, preposition, time)


def sentence_pairs(count: int, rng: random.Random, min_words: int = 4, max_words: int = 8):
    """``count`` distinct (English, German) pairs whose English has min..max words."""
    pairs: dict[str, str] = {}
    attempts = 0
    while len(pairs) < count:
        attempts += 1
        if attempts > 1000 * count:
            raise ValueError(f"cannot draw {count} distinct sentences from the grammar")
        clause = random_clause(rng)
        source = english(clause)
        if min_words <= len(source.split()) <= max_words and source not in pairs:
            pairs[source] = german(clause)
    return list(pairs.items())
