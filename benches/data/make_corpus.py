#!/usr/bin/env python3
"""Builds the compression corpus from this repository's own text (see README.md).

Run from the repository root at the commit named in README.md:
    python3 benches/data/make_corpus.py
Measured samples (prose.txt, code.txt) and training answers (answers.jsonl) come from
different files, so a dictionary trained on the answers has not seen the measured text.
"""
import json
import random
import re
import subprocess

def tracked(pattern):
    out = subprocess.run(["git", "ls-files", pattern], capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())

def read(path):
    return open(path, encoding="utf-8").read()

# Measured prose: the guides and READMEs (markdown, as model answers are written).
prose_files = tracked("docs/*.md") + ["README.md"] + tracked("crates/*/README.md")
prose_files = [f for f in prose_files if "aurelis-cache-compress" not in f and "similarity" not in f]
prose = "\n\n".join(read(f) for f in prose_files)

# Measured code: the facade's sources.
code_files = ["crates/aurelis-cache/src/cache.rs", "crates/aurelis-cache/src/layer.rs",
              "crates/aurelis-cache/src/config.rs"]
code = "\n\n".join(read(f) for f in code_files)

# Training answers: doc comments (prose) and code snippets from other crates' sources,
# wrapped as chat-completion JSON responses.
train_sources = [f for f in tracked("crates/aurelis-cache-core/src/*.rs") + tracked("crates/aurelis-cache-redis/src/*.rs")
                 + tracked("crates/aurelis-cache-sled/src/*.rs") + tracked("xtask/src/*.rs")]
paragraphs, snippets = [], []
for f in train_sources:
    text = read(f)
    doc = []
    for line in text.splitlines():
        m = re.match(r"\s*//[/!] ?(.*)", line)
        if m:
            doc.append(m.group(1))
        elif doc:
            para = " ".join(d for d in doc if not d.startswith("```") and not d.startswith("#")).strip()
            if len(para) > 60:
                paragraphs.append(para)
            doc = []
    for block in re.split(r"\n\s*\n", text):
        if 120 < len(block) < 1500 and ("fn " in block or "let " in block):
            snippets.append(block.strip("\n"))

rng = random.Random(11)
models = ["gpt-4o-mini", "gpt-4o", "claude-sonnet", "llama-3.1-70b"]
answers = []
for i in range(400):
    parts = rng.sample(paragraphs, rng.randint(1, 4))
    content = "\n\n".join(parts)
    if rng.random() < 0.5:
        content += "\n\n```rust\n" + rng.choice(snippets) + "\n```\n"
        if rng.random() < 0.5:
            content += "\n" + rng.choice(paragraphs)
    prompt_tokens = rng.randint(20, 900)
    completion_tokens = max(1, len(content) // 4)
    answers.append({
        "id": "chatcmpl-%016x" % rng.getrandbits(64),
        "object": "chat.completion",
        "created": 1764000000 + i * 37,
        "model": rng.choice(models),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })

open("benches/data/prose.txt", "w", encoding="utf-8").write(prose)
open("benches/data/code.txt", "w", encoding="utf-8").write(code)
with open("benches/data/answers.jsonl", "w", encoding="utf-8") as out:
    for a in answers:
        out.write(json.dumps(a, ensure_ascii=False) + "\n")
print(f"prose {len(prose.encode())} B from {len(prose_files)} files, code {len(code.encode())} B, "
      f"answers {len(answers)} ({len(paragraphs)} paragraphs, {len(snippets)} snippets)")
