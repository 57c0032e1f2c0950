"""Everyday English sentences for the mini LibriSpeech: a hand-written list plus a small
compositional generator, written for this project (free to use).

Example:
    >>> pool = english_sentences(300, seed=0)
    >>> len(pool), len(set(pool))
    (300, 300)
"""

from __future__ import annotations

import random

HANDWRITTEN = (
    "The sun was warm on the old stone wall.",
    "She opened the window and let the cool air in.",
    "My brother keeps his books on a high shelf.",
    "We walked along the river until it grew dark.",
    "The baker starts work at 4 in the morning.",
    "Please close the door when you leave the room.",
    "A small dog barked at the postman.",
    "The children laughed at the funny clown.",
    "He forgot his umbrella and got very wet.",
    "There are 7 days in a week.",
    "The train to the city leaves at 9.",
    "Her garden is full of roses and tulips.",
    "I like to drink tea with milk in the afternoon.",
    "The farmer sold 12 eggs at the market.",
    "They built a little house near the forest.",
    "The teacher wrote a long word on the board.",
    "We could hear the rain on the roof all night.",
    "The old man told us a story about the sea.",
    "She has lived in this town since 1987.",
    "The cat sleeps in a basket by the fire.",
    "Don't touch the stove, it's still hot.",
    "The ship sailed slowly out of the harbour.",
    "My mother makes the best apple pie.",
    "The library closes at 6 on Saturdays.",
    "He painted the fence a bright shade of green.",
    "A cold wind blew across the empty field.",
    "The boy threw the ball over the hedge.",
    "Our neighbours have 3 cats and a parrot.",
    "The bridge was built in 1892.",
    "I can't find my keys anywhere.",
    "She sang a quiet song to the baby.",
    "The clock on the tower struck twelve.",
    "We had soup and bread for supper.",
    "The horse ran across the meadow.",
    "He reads the newspaper every morning.",
    "The road was long and very dusty.",
    "Put the flowers in a vase of water.",
    "The doctor said I should rest for 2 days.",
    "A bird built its nest in the chimney.",
    "They waited at the station for an hour.",
    "The lamp gave a soft yellow light.",
    "You will need a coat, it's cold outside.",
    "The river flows down to the sea.",
    "She wore a blue dress to the party.",
    "The captain looked at the dark clouds.",
    "We planted 40 trees along the lane.",
    "The shop on the corner sells fresh fish.",
    "He whistled a tune as he walked home.",
    "The snow covered the hills in white.",
    "My sister is learning to play the piano.",
    "The letter arrived on a Monday morning.",
    "I haven't seen him since last summer.",
    "The kettle is boiling in the kitchen.",
    "The children built a castle of sand.",
    "Turn left at the church and go straight on.",
    "The moon rose over the quiet village.",
    "She counted 25 sheep in the field.",
    "The wheel of the cart was broken.",
    "His father was a sailor for many years.",
    "We crossed the mountain before the storm.",
    "The milk in the jug has gone sour.",
    "The queen rode through the streets of the town.",
    "Bring me a glass of water, please.",
    "The wolf howled far away in the woods.",
    "They sat by the fire and talked until late.",
    "The price of bread went up again.",
    "He caught a large fish in the lake.",
    "The room was dark and smelled of smoke.",
    "She gave me a book for my birthday.",
    "The garden gate creaked in the wind.",
    "The war ended in 1945.",
    "We'll meet again at the same place tomorrow.",
    "The band played music in the park.",
    "I left my bag on the bus.",
    "The old church has a tall white spire.",
    "The soldiers marched along the road.",
    "My grandmother was born in 1931.",
    "The apples on that tree are not ripe yet.",
    "He was too tired to eat his dinner.",
    "The boat drifted slowly down the stream.",
    "She looked out at the grey sky.",
    "The dog followed us all the way home.",
    "There were 100 people in the hall.",
    "The door was locked and the house was quiet.",
    "We drank cold lemonade in the shade.",
    "The little girl lost her red shoe.",
    "The wind turned the sails of the mill.",
    "He said he would write to us soon.",
    "The fields were golden with wheat.",
    "Mind the step as you come in.",
    "The king had three sons and a daughter.",
    "She has a pair of silver earrings.",
    "The path led down to a sandy beach.",
    "They sold their farm and moved to the city.",
    "The owl sat still on the branch.",
    "My uncle owns a small bakery.",
    "The journey took 5 hours by coach.",
    "The pond froze during the night.",
    "It's time to go to bed now.",
)

_NAMES = "Mary John Anna Peter Lucy Thomas Sarah James Emma David Alice Henry Grace Robert".split()
_PAST_VERBS = "saw found carried bought painted cleaned lost mended sold wanted".split()
_ADJECTIVES = "old new small large red green heavy wooden broken shiny".split()
_NOUNS = "box chair basket lamp coat table bicycle kettle hat clock".split()
_PLACES = (
    "in the garden",
    "at the market",
    "near the station",
    "by the river",
    "in the kitchen",
    "behind the barn",
    "on the hill",
    "at school",
)
_TIMES = ("yesterday", "last week", "on Sunday", "this morning", "in the evening", "after lunch")


def _compositional_sentence(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    verb = rng.choice(_PAST_VERBS)
    adjective = rng.choice(_ADJECTIVES)
    noun = rng.choice(_NOUNS)
    place = rng.choice(_PLACES)
    template = rng.randrange(4)
    if template == 0:
        return f"{name} {verb} the {adjective} {noun} {place}."
    if template == 1:
        time = rng.choice(_TIMES)
        article = "an" if adjective[0] in "aeiou" else "a"
        return f"{time[0].upper()}{time[1:]} {name} {verb} {article} {adjective} {noun}."
    if template == 2:
        count = rng.randint(2, 60)
        return f"{name} {verb} {count} {noun}{'es' if noun.endswith(('x', 'ch')) else 's'} {place}."
    other = rng.choice([n for n in _NAMES if n != name])
    return f"{name} and {other} {verb} the {noun} {rng.choice(_TIMES)}."


def english_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct sentences: the hand-written ones first, then generated ones."""
    sentences = list(dict.fromkeys(HANDWRITTEN))[:count]
    seen = set(sentences)
    rng = random.Random(f"english-{seed}")
    attempts = 0
    while len(sentences) < count:
        attempts += 1
        if attempts > 100 * count:
            raise ValueError(f"cannot make {count} distinct English sentences; ask for fewer")
        sentence = _compositional_sentence(rng)
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences
