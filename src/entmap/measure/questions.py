"""TIFA-style questions: each stated element of a prompt becomes a question with a known answer.

From a prompt's structured cells (:mod:`entmap.inputs.prompt_structure`), one question per item:

==============  ==========================================  ===============
item            question                                    expected answer
==============  ==========================================  ===============
object X        Is there X?                                 yes
count N=k       How many N are there?                       k (digits)
colour N=C      What color is the N?                        C
attribute N=A   Is the N A?                                 yes
relation S/R/O  Is the S R the O?                           yes
==============  ==========================================  ===============

Answers are compared after :func:`normalize_answer`, and the faithfulness of an image is TIFA's
accuracy over the prompt's questions Q(p):

    f(image, p) = (1 / |Q(p)|) * sum over q in Q(p) of [normalize(answer(image, q)) == normalize(expected(q))]

A prompt whose cells state nothing has no questions and is not scored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from entmap.inputs.prompt_structure import PromptElements, load_structure

#: single number words and VQA's "none" -> digits (VQAv2 answers counts in digits)
_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"
)
NUMBER_WORDS = {word: str(value) for value, word in enumerate(_NUMBERS.split(" "))} | {"none": "0"}
#: informal yes and no
YES_NO = {"yeah": "yes", "yep": "yes", "yup": "yes", "true": "yes", "nope": "no", "nah": "no", "false": "no"}
#: British spellings -> the American ones VQA datasets use
SPELLINGS = {"grey": "gray", "colour": "color", "coloured": "colored", "colourful": "colorful"}
ARTICLES = {"a", "an", "the"}
_PUNCTUATION = re.compile(r"[^\w\s-]")


@dataclass(frozen=True)
class Question:
    """One question about a prompt's element: ``kind`` (object, count, colour, attribute, relation),
    the ``element`` as the cell states it, the question ``text`` and the normalized expected ``answer``."""

    kind: str
    element: str
    text: str
    answer: str


def normalize_answer(text: str) -> str:
    """An answer in the form answers are compared in.

    Lowercase; apostrophes dropped and other punctuation (but hyphens) turned into spaces; the
    articles a, an, the dropped; number words zero..twenty and "none" as digits; yeah/yep/yup/true
    as yes and nope/nah/false as no; grey as gray (British spellings as American); single spaces.
    "Two." -> "2", "Yes!" -> "yes", "a grey one" -> "gray 1".
    """
    words = _PUNCTUATION.sub(" ", text.lower().replace("'", "")).split()
    mapped = [NUMBER_WORDS.get(w) or YES_NO.get(w) or SPELLINGS.get(w) or w for w in words if w not in ARTICLES]
    return " ".join(mapped)


#: question templates by kind; the fields are those of the cell's item
TEMPLATES = {
    "object": "Is there {item}?",
    "count": "How many {noun} are there?",
    "colour": "What color is the {noun}?",
    "attribute": "Is the {noun} {value}?",
    "relation": "Is the {subject} {relation} the {object}?",
}


def questions_for(elements: PromptElements) -> tuple[Question, ...]:
    """The questions of one prompt, column by column (objects, counts, colours, attributes, relations)."""
    found = [Question("object", item, TEMPLATES["object"].format(item=item), "yes") for item in elements.objects]
    for noun, number in elements.counts:
        found.append(Question("count", f"{noun}={number}", TEMPLATES["count"].format(noun=noun), str(number)))
    for noun, colour in elements.colours:
        text = TEMPLATES["colour"].format(noun=noun)
        found.append(Question("colour", f"{noun}={colour}", text, normalize_answer(colour)))
    for noun, value in elements.attributes:
        text = TEMPLATES["attribute"].format(noun=noun, value=value)
        found.append(Question("attribute", f"{noun}={value}", text, "yes"))
    for r in elements.relations:
        text = TEMPLATES["relation"].format(subject=r.subject, relation=r.relation, object=r.object)
        found.append(Question("relation", f"{r.subject} / {r.relation} / {r.object}", text, "yes"))
    return tuple(found)


def suite_questions(path: str | os.PathLike[str]) -> dict[str, tuple[Question, ...]]:
    """{prompt id: its questions} of every prompt of a suite; () where the prompt states nothing."""
    return {pid: questions_for(elements) for pid, elements in load_structure(path).items()}
