"""What a model holds, for tests that assert the state that matters: trained weights, in memory and on disk."""

import torch


def weights_in_memory(model) -> dict:
    """The trained weights under the names their saved file uses: the adapter for LoRA, every tensor otherwise."""
    if hasattr(model, "peft_config"):
        from peft import get_peft_model_state_dict

        return {name: tensor.detach().clone() for name, tensor in get_peft_model_state_dict(model).items()}
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def saved_weights(folder) -> dict:
    """The weights of a saved adapter, model or checkpoint folder."""
    from safetensors.torch import load_file

    adapter = folder / "adapter_model.safetensors"
    return load_file(adapter if adapter.exists() else folder / "model.safetensors")


def weight_files(folder) -> dict:
    """The bytes of a folder's weight files, to check that a rerun rewrote nothing."""
    return {f.name: f.read_bytes() for f in sorted(folder.glob("*.safetensors"))}


def assert_same_weights(expected: dict, actual: dict):
    """Bit for bit. On a CPU the same operations on the same inputs give the same bits, and a resume that restores
    the weights, optimizer, scheduler, RNG and data position repeats them exactly; any tolerance would hide a partial
    restore (an adapter restarted from scratch differs by ~0.2 after 4 steps, a missed optimizer state by less)."""
    assert expected and set(expected) <= set(actual)
    different = [name for name in expected if not torch.equal(expected[name].cpu(), actual[name].cpu())]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, e.g. {different[:3]}"
