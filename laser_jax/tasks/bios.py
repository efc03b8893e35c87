"""Bias in Bios: the gender and the profession of the person a biography describes.

Records ``{hard_text, gender, profession}`` as in hub ``LabHC/bias_in_bios``
(split ``dev``, as the official code used): ``gender`` 0 = male, 1 = female;
``profession`` an index into :data:`LABHC_PROFESSIONS` (a name is accepted too).
A local ``.json``/``.jsonl``/``.csv``/``.parquet`` file in that layout works the
same way.

- ``bios_gender``: ``"Consider the following text: <bio>. Is the person in this
  text a male or female? The gender of this person is"``; ``" male"`` vs ``" female"``.
- ``bios_profession``: the same text, then ``" What is the profession of the
  person in this text? The profession of this person is"``; argmax over the 8
  single-token professions of :data:`PROFESSIONS`; bios of other professions are
  dropped.
"""

from __future__ import annotations

from laser_jax.tasks.common import CHOICE, Hub, Item, Record, Task, choice_item, sentence, spaced

GENDERS = ("male", "female")
PROFESSIONS = ("journalist", "poet", "composer", "model", "teacher", "architect", "painter", "professor")
# The class names of LabHC/bias_in_bios' ``profession`` label, in index order.
LABHC_PROFESSIONS = (
    "accountant", "architect", "attorney", "chiropractor", "comedian", "composer", "dentist", "dietitian",
    "dj", "filmmaker", "interior designer", "journalist", "model", "nurse", "painter", "paralegal", "pastor",
    "personal trainer", "photographer", "physician", "poet", "professor", "psychologist", "rapper",
    "software engineer", "surgeon", "teacher", "yoga teacher",
)
HUB = Hub("LabHC/bias_in_bios", None, ("dev",))
DEFAULT_PATH = "bios/bias_in_bios_dev.jsonl"


def _text(record: Record) -> str:
    return f"Consider the following text: {sentence(record.text('hard_text'))}"


def _class(record: Record, key: str, names: tuple[str, ...]) -> str:
    """A class name from its index in ``names`` or the name itself."""
    value = record.get(key)
    if isinstance(value, str) and value.strip().lower() in names:
        return value.strip().lower()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    raise record.error(f"field {key!r} should be a class index 0..{len(names) - 1} or one of {', '.join(names)}; got {value!r}")


def gender_items(record: Record) -> list[Item]:
    gender = _class(record, "gender", GENDERS)
    prompt = _text(record) + " Is the person in this text a male or female? The gender of this person is"
    return [choice_item(prompt, tuple(spaced(g) for g in GENDERS), GENDERS.index(gender))]


def profession_items(record: Record) -> list[Item]:
    profession = _class(record, "profession", LABHC_PROFESSIONS)
    if profession not in PROFESSIONS:
        return []
    prompt = _text(record) + " What is the profession of the person in this text? The profession of this person is"
    return [choice_item(prompt, tuple(spaced(p) for p in PROFESSIONS), PROFESSIONS.index(profession))]


def _task(name: str, description: str, record_items) -> Task:
    return Task(name=name, scoring=CHOICE, description=description, record_items=record_items,
                default_path=DEFAULT_PATH, hub=HUB, single_token=True)


GENDER_TASK = _task("bios_gender", "Bias in Bios gender: ' male' vs ' female'", gender_items)
PROFESSION_TASK = _task("bios_profession", "Bias in Bios profession: argmax over 8 single-token professions", profession_items)
