"""The batch protocol (docs/protocol.md#the-unlearning-loop) and the ensemble equivalence."""
import copy

import torch

import mnog
from mnog.batches import as_batch, paired_batches
from mnog.models import mlp


def test_retain_batches_continue_across_epochs_and_wrap():
    retain = as_batch((torch.arange(10.0).unsqueeze(1), torch.arange(10.0)), None, "retain")
    forget = as_batch((torch.arange(7.0).unsqueeze(1) + 100, torch.zeros(7)), None, "forget")
    steps = list(paired_batches(retain, forget, 3, epochs=4, members=None, generator=torch.Generator().manual_seed(0)))
    assert [e for e, _, _ in steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]     # ⌈7/3⌉ forget batches per epoch
    assert [len(f) for _, _, f in steps[:3]] == [3, 3, 1]
    assert all(len(r) == 3 for _, r, _ in steps)                               # full retain batches
    seen = [r.inputs.squeeze(1).long().tolist() for _, r, _ in steps]
    # Each pass over the retain set uses 3 disjoint batches (the partial 4th is dropped), then reshuffles.
    for first in range(0, 12, 3):
        chunk = sum(seen[first:first + 3], [])
        assert len(set(chunk)) == 9
    forget_epoch = sorted(sum((f.inputs.squeeze(1).long().tolist() for _, _, f in steps[:3]), []))
    assert forget_epoch == list(range(100, 107))                               # every forget sample once


def test_p_retain_fixes_a_subset_for_the_whole_run(sine_data):
    retain, forget = sine_data
    seen = set()

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = mlp(8)

        def forward(self, x):
            if len(x) > 4:
                seen.update(x.squeeze(1).tolist())
            return self.net(x)

    mnog.unlearn(Spy(), "GD", forget, retain, "mse", epochs=5, batch_size=5, p_retain=0.5, eta=1e-3)
    assert len(seen) == 10                                                      # int(0.5 · 20)


def test_an_ensemble_unlearns_exactly_like_its_members_one_by_one(vector_data):
    (x_r, y_r), (x_f, y_f) = vector_data
    members = [mlp(16, inputs=5) for _ in range(3)]
    ensemble = mnog.Ensemble([copy.deepcopy(m) for m in members])
    shift = torch.tensor([0.0, 0.5, -0.5]).view(3, 1, 1)
    retain = (x_r + shift, torch.sin(x_r + shift).sum(-1, keepdim=True))
    forget = (x_f.expand(3, -1, -1), y_f.expand(3, -1, -1))
    for name, hp in [("GD", {}), ("NGP", {"lambda_ga": 0.1}), ("Ridge", {"lambda_reg": 0.1, "gamma_reg": 0.9}),
                     ("MinNorm-OG", dict(lambda_reg=0.5, gamma_reg=0.9, t_gd=2, t_proj=2, n_pert=12))]:
        ens = copy.deepcopy(ensemble)
        mnog.unlearn(ens, name, forget, retain, "mse", epochs=6, eta=1e-2, **hp)
        for i, member in enumerate(members):
            alone = copy.deepcopy(member)
            mnog.unlearn(alone, name, (forget[0][i], forget[1][i]), (retain[0][i], retain[1][i]), "mse",
                         epochs=6, eta=1e-2, **hp)
            for a, b in zip(ens.member(i).parameters(), alone.parameters()):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name} member {i}")


def test_ensemble_forward_equals_members(sine_data):
    (x_r, _), _ = sine_data
    members = [mlp(16) for _ in range(4)]
    ensemble = mnog.Ensemble(members)
    out = ensemble(ensemble.broadcast(x_r))
    for i, m in enumerate(members):
        torch.testing.assert_close(out[i], m(x_r))
