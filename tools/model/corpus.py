"""Build the training corpus for the bundled model from WordNet's glosses.

WordNet 3.0 (Debian package ``wordnet-base``, files under /usr/share/wordnet)
stores, for every synset, a gloss: one or more definitions followed by
example sentences in double quotes. Each synset becomes one short document:

    influenza: an acute febrile highly contagious viral disease.

    What is a headache? A headache is pain in the head caused by ...

Documents are ordered deterministically, shuffled with a fixed seed and split
into train and validation sets by a stable hash of the synset's offset, so the
split does not depend on the shuffle or on the number of documents.

Usage (writes train.txt and valid.txt, one document per line):

    /usr/bin/python3 tools/model/corpus.py --out tools/model/out
"""

import argparse
import hashlib
import os
import random
import re
import sys

WORDNET_DIR = "/usr/share/wordnet"
POS_FILES = (("noun", "data.noun"), ("verb", "data.verb"),
             ("adj", "data.adj"), ("adv", "data.adv"))

# Lexicographer file numbers (WordNet lexnames) of noun synsets worth a
# question-form document too: body, state (diseases, conditions), process,
# phenomenon, substance, act, animal, plant, food, artifact, person.
QUESTION_LEXFILES = {8, 26, 22, 19, 27, 4, 5, 20, 13, 6, 18}


def _a_or_an(phrase):
    """Return the indefinite article for a noun phrase, by its first letter."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _clean(text):
    """Normalise whitespace and strip stray separators from a gloss part."""
    text = re.sub(r"\s+", " ", text).strip()
    return text.strip(" ;")


def parse_gloss(gloss):
    """Split a WordNet gloss into (definitions, examples)."""
    examples = [_clean(m) for m in re.findall(r'"([^"]+)"', gloss)]
    rest = re.sub(r'"[^"]*"', "", gloss)
    definitions = [_clean(p) for p in rest.split(";")]
    return [d for d in definitions if d], [e for e in examples if e]


def parse_data_line(line):
    """Parse one data.* line into (offset, lexfile, pos, lemmas, gloss)."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexfile, pos = fields[0], int(fields[1]), fields[2]
    count = int(fields[3], 16)
    lemmas = []
    for i in range(count):
        word = fields[4 + 2 * i]
        word = re.sub(r"\([a-z]+\)$", "", word)  # adjective markers like (a), (p)
        lemmas.append(word.replace("_", " "))
    return offset, lexfile, pos, lemmas, gloss.strip()


def synset_documents(offset, lexfile, pos, lemmas, gloss):
    """Turn one synset into its documents (one or two short paragraphs)."""
    definitions, examples = parse_gloss(gloss)
    if not definitions:
        return []
    lemma = lemmas[0]
    definition = "; ".join(definitions)
    text = f"{lemma}: {definition}."
    if len(lemmas) > 1:
        text += " Also called " + ", ".join(lemmas[1:4]) + "."
    for ex in examples[:3]:
        ex = ex[0].upper() + ex[1:]
        if ex[-1] not in ".!?":
            ex += "."
        text += " " + ex
    docs = [text]
    if pos == "n" and lexfile in QUESTION_LEXFILES:
        first = definitions[0]
        countable = first.startswith(("a ", "an ", "any ", "one ", "someone ", "something ", "the "))
        if lemma[:1].isupper() or not countable:
            subject = lemma[0].upper() + lemma[1:]
            question = f"What is {lemma}?"
        else:
            subject = f"{_a_or_an(lemma).capitalize()} {lemma}"
            question = f"What is {_a_or_an(lemma)} {lemma}?"
        docs.append(f"{question} {subject} is {first}.")
    return docs


def load_documents(wordnet_dir=WORDNET_DIR):
    """Return every (key, document) pair from WordNet, in file order."""
    out = []
    for _, name in POS_FILES:
        path = os.path.join(wordnet_dir, name)
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                offset, lexfile, pos, lemmas, gloss = parse_data_line(line)
                for i, doc in enumerate(synset_documents(offset, lexfile, pos, lemmas, gloss)):
                    out.append((f"{name}:{offset}", doc))
    return out


def is_validation(key, fraction):
    """Stable train/validation assignment: a synset's documents stay together."""
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return (h % 10000) < fraction * 10000


def build(out_dir, valid_fraction=0.02, seed=1234, wordnet_dir=WORDNET_DIR):
    """Write train.txt and valid.txt under out_dir; return their document counts."""
    docs = load_documents(wordnet_dir)
    rng = random.Random(seed)
    rng.shuffle(docs)
    train = [d for k, d in docs if not is_validation(k, valid_fraction)]
    valid = [d for k, d in docs if is_validation(k, valid_fraction)]
    os.makedirs(out_dir, exist_ok=True)
    for name, part in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            for d in part:
                f.write(d + "\n")
    return len(train), len(valid)


def main(argv=None):
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory for train.txt and valid.txt")
    p.add_argument("--wordnet-dir", default=WORDNET_DIR, help="WordNet database directory (default %(default)s)")
    p.add_argument("--valid-fraction", type=float, default=0.02, help="fraction of synsets held out (default %(default)s)")
    p.add_argument("--seed", type=int, default=1234, help="shuffle seed (default %(default)s)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.wordnet_dir, "data.noun")):
        sys.exit(f"corpus: {args.wordnet_dir}/data.noun not found; install it with: apt-get install wordnet-base")
    n_train, n_valid = build(args.out, args.valid_fraction, args.seed, args.wordnet_dir)
    print(f"corpus: {n_train} training and {n_valid} validation documents in {args.out}")


if __name__ == "__main__":
    main()
