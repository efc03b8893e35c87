"""Packing into a run's fixed batch shapes: sequences shared, few shapes chosen from the whole data set, every
sequence in exactly one batch of a shape that holds it, known answers for the padded lengths, rows and merges."""

from collections import Counter

import numpy as np
import pytest

from laser_jax.batching import (HEAD_WEIGHT, BatchShape, ShapePlan, layout_work, length_bucket, make_batches, padded_work,
                                plan_sequences, rows_per_batch, sequence_need)
from laser_jax.errors import DataError
from laser_jax.examples import Example
from tests.test_sweep import EXAMPLES  # six examples: probes, choices, a repeat



def lengths_examples(lengths, targets=1):
    """One example per length n, all different: a sequence of n tokens (prompt n + 1 - targets, then the answer)."""
    return [Example(tuple(range(1 + i, n + 2 - targets + i)), tuple(range(200, 200 + targets)))
            for i, n in enumerate(lengths)]


def test_plan_shares_sequences_and_reads_single_token_candidates_at_the_prompt_end():
    plan = plan_sequences(EXAMPLES)
    assert plan.main[0] == plan.main[5]
    assert plan.choice_seq[2, 0] == plan.main[2]  # the gold multi-token choice is the answer's own sequence
    assert plan.choice_slot[2, 1] == 0 and plan.choice_seq[2, 2] >= 0
    assert plan.sequences[plan.main[3]].extras == (1, 70)  # probe, then the single-token choice
    batches = make_batches(plan, batch_size=4)
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == list(range(len(plan.sequences)))
    assert {b.extras.shape[1] for b in batches} == {4}  # one extras width for the run: 3 probes, padded to 4


def test_length_buckets_and_rows_known_answers():
    assert [length_bucket(n) for n in (1, 8, 9, 13, 17, 25, 33, 49, 65)] == [8, 8, 10, 14, 20, 28, 40, 56, 80]
    assert [rows_per_batch(length, 48, 1024) for length in (8, 24, 40, 64, 2000)] == [48, 42, 25, 16, 1]


def test_one_length_gives_one_shape_and_full_batches_padded_up():
    """Ten single-token sequences of length 6: one shape, 4 rows each; the last batch is padded to 4 rows."""
    plan = plan_sequences(lengths_examples([6] * 10))
    shapes = ShapePlan.build(plan.sequences, batch_size=4)
    assert shapes.shapes == (BatchShape(targets=1, length=8, rows=4),) and shapes.extras == 1
    batches = shapes.batches(plan)
    assert [b.ids.shape for b in batches] == [(4, 8)] * 3
    assert [len(b.rows) for b in batches] == [4, 4, 2]
    assert batches[-1].mask[2:].sum() == 2  # padding rows hold one dummy token each


def test_shapes_are_added_while_they_save_padded_work_partly_filled_batches_counted():
    """Sixty short sequences, three of length 9 and two long ones (16 rows of 8 or 10 tokens, 6 of 40): one
    shape of 40 pads them into 11 batches of 6 rows; a shape of 8 for the short ones leaves 4 batches of 16 and
    one of 6 rows. A shape of 10 would save nothing: the three 9s ride in the long batch's free rows. With 48
    of them it saves two batches of 40."""
    long_row, short_row, ten_row = 40 + HEAD_WEIGHT, 8 + HEAD_WEIGHT, 10 + HEAD_WEIGHT
    plan = plan_sequences(lengths_examples([6] * 60 + [9] * 3 + [40] * 2))
    shapes = ShapePlan.build(plan.sequences, batch_size=16, batch_tokens=256)
    assert [(s.length, s.rows) for s in shapes.shapes] == [(8, 16), (40, 6)]
    assert layout_work(shapes.layout(plan)) == 4 * 16 * short_row + 6 * long_row
    assert padded_work(shapes.shapes, Counter(sequence_need(q) for q in plan.sequences)) == 4 * 16 * short_row + 6 * long_row
    assert padded_work(shapes.shapes[-1:], Counter(sequence_need(q) for q in plan.sequences)) == 11 * 6 * long_row
    many_nines = plan_sequences(lengths_examples([6] * 60 + [9] * 48 + [40] * 2))
    shapes = ShapePlan.build(many_nines.sequences, batch_size=16, batch_tokens=256)
    assert [(s.length, s.rows) for s in shapes.shapes] == [(8, 16), (10, 16), (40, 6)]
    assert layout_work(shapes.layout(many_nines)) == 4 * 16 * short_row + 3 * 16 * ten_row + 6 * long_row
    capped = ShapePlan.build(plan.sequences, batch_size=16, batch_tokens=256, max_shapes=1)
    assert [(s.length, s.rows) for s in capped.shapes] == [(40, 6)]  # the one shape that holds everything


def test_a_shape_is_added_only_when_the_run_makes_enough_passes_to_pay_for_its_compiles():
    """The same data: one pass of a run cannot pay for a second shape's compiles; 85 passes can."""
    plan = plan_sequences(lengths_examples([6] * 60 + [9] * 3 + [40] * 2))
    saving = (11 * 6 - 6) * (40 + HEAD_WEIGHT) - 4 * 16 * (8 + HEAD_WEIGHT)  # padded positions the 8s' shape saves a pass
    few = ShapePlan.build(plan.sequences, batch_size=16, batch_tokens=256, passes=1, shape_cost=saving + 1)
    many = ShapePlan.build(plan.sequences, batch_size=16, batch_tokens=256, passes=85, shape_cost=saving + 1)
    assert [s.length for s in few.shapes] == [40] and [s.length for s in many.shapes] == [8, 40]


def test_a_runs_parts_weigh_by_their_own_passes():
    """Selection runs its grid on validation, a few variants on test: a shape only the lightly worked part
    would use is not worth its compiles, though it is when that part is the heavily worked one."""
    sequences = plan_sequences(lengths_examples([40] * 12 + [6] * 60)).sequences
    long, short = sequences[:12], sequences[12:]
    saving = 10 * 6 * (40 + HEAD_WEIGHT) - 4 * 16 * (8 + HEAD_WEIGHT)  # the short part's, one pass

    def lengths(passes):
        return [s.length for s in ShapePlan.build(sequences, 16, 256, passes=passes, shape_cost=2 * saving).shapes]

    assert lengths(85) == [8, 40]
    assert lengths([(long, 85), (short, 1)]) == [40]
    assert lengths([(long, 1), (short, 1.9)]) == [40]
    assert lengths([(long, 1), (short, 2)]) == [8, 40]


def test_multi_token_answers_get_their_own_shape_and_every_sequence_lands_once():
    examples = lengths_examples([6] * 40) + lengths_examples([7] * 8, targets=3)
    plan = plan_sequences(examples)
    shapes = ShapePlan.build(plan.sequences, batch_size=8)
    assert {s.targets for s in shapes.shapes} == {1, 4}
    batches = shapes.batches(plan)
    assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == list(range(len(plan.sequences)))
    for batch in batches:
        (shape,) = [s for s in shapes.shapes if (s.rows, s.length, s.targets) == (*batch.ids.shape, batch.select.shape[1])]
        assert all(shape.covers(sequence_need(plan.sequences[r])) for r in batch.rows)


def test_a_subset_packs_into_the_same_shapes_its_last_batches_merged_and_a_stranger_is_refused():
    """A shape's partly filled last batch moves into a larger shape's free rows where they hold it: the
    whole set's 4 leftover 8-token sequences join the 20-token batch (8 batches, not 9), and a 12-item subset
    (a racing look) fills 3 batches, not one nearly empty batch per shape."""
    lengths = [3, 5, 8, 12, 15, 20, 27, 33, 40, 9, 10, 11] * 4
    examples = lengths_examples(lengths)
    whole = plan_sequences(examples)
    shapes = ShapePlan(tuple(BatchShape(1, length, rows) for length, rows in ((8, 8), (12, 8), (20, 6), (40, 4))), 1)

    def packed(plan):
        batches = shapes.batches(plan)
        assert sorted(np.concatenate([b.rows for b in batches]).tolist()) == list(range(len(plan.sequences)))
        return [(b.ids.shape, sorted(len(plan.sequences[r].tokens) for r in b.rows)) for b in batches]

    assert [shape for shape, _ in packed(whole)] == [(8, 8), (8, 12), (8, 12), (6, 20), (6, 20), (4, 40), (4, 40), (4, 40)]
    assert packed(whole)[4] == ((6, 20), [3, 5, 8, 8, 15, 20])
    assert packed(plan_sequences(examples[5:17])) == [((8, 8), [3, 5, 8]), ((6, 20), [9, 10, 11, 12, 15, 20]),
                                                      ((4, 40), [27, 33, 40])]
    with pytest.raises(DataError, match="does not fit the run's batch shapes"):
        shapes.batches(plan_sequences(lengths_examples([41])))
    with pytest.raises(DataError):
        ShapePlan.build([], batch_size=8)
