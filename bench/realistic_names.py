"""Accuracy of a name checkpoint on common surnames, ten per country, outside the training data's
skew (names_test is 47 % Russian; real users' names are not).

The lists are the most common surnames of each country as published by national statistics
offices and genealogy sites, written in ASCII the way the training data writes them. Run:
``python -m bench.realistic_names [WEIGHTS_DIR ...]``.
"""

import sys
from pathlib import Path

import torch

from models.checkpoint import load_checkpoint
from models.text import normalize_name
from training.names import predict_names

COMMON: dict[str, list[str]] = {
    "Arabic": [
        "Haddad",
        "Nader",
        "Khoury",
        "Hakimi",
        "Mansour",
        "Saleh",
        "Aziz",
        "Nassar",
        "Shadid",
        "Tahan",
    ],
    "Chinese": ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou"],
    "Czech": [
        "Novak",
        "Svoboda",
        "Novotny",
        "Dvorak",
        "Cerny",
        "Prochazka",
        "Kucera",
        "Vesely",
        "Horak",
        "Nemec",
    ],
    "Dutch": [
        "De Jong",
        "Jansen",
        "De Vries",
        "Van den Berg",
        "Van Dijk",
        "Bakker",
        "Janssen",
        "Visser",
        "Smit",
        "Meijer",
    ],
    "English": [
        "Smith",
        "Jones",
        "Williams",
        "Taylor",
        "Brown",
        "Davies",
        "Evans",
        "Wilson",
        "Thomas",
        "Johnson",
    ],
    "French": [
        "Martin",
        "Bernard",
        "Dubois",
        "Thomas",
        "Robert",
        "Richard",
        "Petit",
        "Durand",
        "Leroy",
        "Moreau",
    ],
    "German": [
        "Muller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Schulz",
        "Hoffmann",
    ],
    "Greek": [
        "Papadopoulos",
        "Vlachos",
        "Angelopoulos",
        "Nikolaidis",
        "Georgiou",
        "Petridis",
        "Athanasiou",
        "Dimitriou",
        "Papadakis",
        "Oikonomou",
    ],
    "Irish": [
        "Murphy",
        "Kelly",
        "O'Sullivan",
        "Walsh",
        "O'Brien",
        "Byrne",
        "Ryan",
        "O'Connor",
        "O'Neill",
        "Doyle",
    ],
    "Italian": [
        "Rossi",
        "Russo",
        "Ferrari",
        "Esposito",
        "Bianchi",
        "Romano",
        "Colombo",
        "Ricci",
        "Marino",
        "Greco",
    ],
    "Japanese": [
        "Sato",
        "Suzuki",
        "Takahashi",
        "Tanaka",
        "Watanabe",
        "Ito",
        "Yamamoto",
        "Nakamura",
        "Kobayashi",
        "Kato",
    ],
    "Korean": ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim"],
    "Polish": [
        "Nowak",
        "Kowalski",
        "Wisniewski",
        "Wojcik",
        "Kowalczyk",
        "Kaminski",
        "Lewandowski",
        "Zielinski",
        "Szymanski",
        "Wozniak",
    ],
    "Portuguese": [
        "Silva",
        "Santos",
        "Ferreira",
        "Pereira",
        "Oliveira",
        "Costa",
        "Rodrigues",
        "Martins",
        "Jesus",
        "Sousa",
    ],
    "Russian": [
        "Ivanov",
        "Smirnov",
        "Kuznetsov",
        "Popov",
        "Vasiliev",
        "Petrov",
        "Sokolov",
        "Mikhailov",
        "Novikov",
        "Fedorov",
    ],
    "Scottish": [
        "MacDonald",
        "Campbell",
        "Stewart",
        "Robertson",
        "Thomson",
        "Anderson",
        "MacLeod",
        "Ross",
        "Fraser",
        "Murray",
    ],
    "Spanish": [
        "Garcia",
        "Rodriguez",
        "Gonzalez",
        "Fernandez",
        "Lopez",
        "Martinez",
        "Sanchez",
        "Perez",
        "Gomez",
        "Martin",
    ],
    "Vietnamese": ["Nguyen", "Tran", "Le", "Pham", "Hoang", "Phan", "Vu", "Dang", "Bui", "Do"],
}


def accuracy(directory: Path) -> tuple[float, dict[str, int]]:
    """Top-1 accuracy over all the lists, and correct answers per country (of 10)."""
    checkpoint = load_checkpoint(directory)
    labels = checkpoint.card["labels"]
    names = [normalize_name(n) for ns in COMMON.values() for n in ns]
    gold = [c for c, ns in COMMON.items() for _ in ns]
    probs = predict_names(checkpoint.model, names, torch.device("cpu"))
    pred = [labels[i] for i in probs.argmax(1).tolist()]
    per = {c: sum(p == g == c for p, g in zip(pred, gold, strict=True)) for c in COMMON}
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold), per


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]] or [Path("weights/name-gru")]
    for directory in dirs:
        acc, per = accuracy(directory)
        print(f"{directory}: {acc:.1%} of {sum(len(v) for v in COMMON.values())} common surnames")
        print("  " + ", ".join(f"{c} {n}/10" for c, n in per.items()))


if __name__ == "__main__":
    main()
