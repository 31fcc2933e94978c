"""Regenerate the synthetic CSV files in this folder (deterministic: fixed seed).

Run from anywhere: python benchmarks/notebooks/data/generate_data.py
"""
from pathlib import Path

import numpy as np, pandas as pd
rng = np.random.default_rng(2024)
out = str(Path(__file__).resolve().parent) + "/"
# stores
stores = pd.DataFrame({
    "store_id": [101, 102, 103, 104, 105, 106],
    "city": ["Lyon", "Porto", "Leeds", "Graz", "Turku", "Ghent"],
    "region": ["South", "West", "North", "East", "North", "West"],
    "size_sqm": [420, 310, 560, 275, 390, 450],
    "opened": ["2015-03-01", "2017-06-15", "2012-09-30", "2019-01-10", "2016-11-05", "2014-04-20"],
})
stores.to_csv(out + "stores.csv", index=False)
# sales
products = {
    "notebook": ("stationery", 3.5), "pen": ("stationery", 1.2), "stapler": ("stationery", 8.0),
    "mug": ("kitchen", 6.5), "kettle": ("kitchen", 24.0), "teapot": ("kitchen", 18.0),
    "lamp": ("home", 29.0), "cushion": ("home", 12.5), "rug": ("home", 45.0),
}
n = 600
names = list(products)
prod = rng.choice(names, n, p=[.18, .2, .06, .14, .06, .06, .09, .12, .09])
dates = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
units = rng.poisson(3, n) + 1
price = np.array([products[p][1] for p in prod]) * rng.choice([1.0, 1.0, 1.0, 0.9, 0.8], n)
sales = pd.DataFrame({
    "order_id": np.arange(10001, 10001 + n),
    "date": dates.strftime("%Y-%m-%d"),
    "store_id": rng.choice(stores.store_id, n),
    "product": prod,
    "category": [products[p][0] for p in prod],
    "units": units,
    "unit_price": price.round(2),
}).sort_values(["date", "order_id"]).reset_index(drop=True)
sales["order_id"] = np.arange(10001, 10001 + n)
sales.to_csv(out + "sales.csv", index=False)
# messy students
first = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Milo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tess", "Umar", "Vera", "Wes", "Yara", "Zoe"]
last = ["Smith", "Okafor", "Novak", "Silva", "Kim", "Haddad", "Moreau", "Ito", "Berg", "Costa"]
rows = []
for i in range(120):
    f, l = rng.choice(first), rng.choice(last)
    name = f"{f} {l}"
    if rng.random() < 0.15: name = "  " + name.lower() + " "
    email = f"{f.lower()}.{l.lower()}@uni.example" if rng.random() > 0.08 else ""
    age = str(int(rng.integers(18, 31))) if rng.random() > 0.07 else ("unknown" if rng.random() < .5 else "")
    course = rng.choice(["Math", "math ", "Physics", "Biology", "biology", "Chemistry"])
    score = rng.normal(68, 12)
    score = f"{score:.1f}" if rng.random() > 0.1 else ""
    hours = round(float(rng.gamma(4, 2.5)), 1)
    rows.append((1000 + i, name, email, age, course, hours, score))
students = pd.DataFrame(rows, columns=["student_id", "name", "email", "age", "course", "study_hours", "exam_score"])
students = pd.concat([students, students.sample(6, random_state=1)]).reset_index(drop=True)
students.to_csv(out + "students.csv", index=False)
# housing
m = 400
sqft = rng.normal(1500, 450, m).clip(450, 3800).round()
bedrooms = np.clip((sqft / 550 + rng.normal(0, 0.7, m)).round(), 1, 6).astype(int)
age = rng.integers(0, 80, m)
dist = rng.gamma(2.2, 4.0, m).round(1)
neigh = rng.choice(["riverside", "old_town", "suburbs", "hillside"], m, p=[.25, .2, .4, .15])
bonus = pd.Series(neigh).map({"riverside": 40000, "old_town": 25000, "suburbs": 0, "hillside": 15000}).to_numpy()
price = 50000 + 140 * sqft + 9000 * bedrooms - 900 * age - 3500 * dist + bonus + rng.normal(0, 25000, m)
housing = pd.DataFrame({"sqft": sqft.astype(int), "bedrooms": bedrooms, "age_years": age, "distance_km": dist,
                        "neighborhood": neigh, "has_garage": (rng.random(m) < 0.55).astype(int),
                        "price": price.round(-2).astype(int)})
housing.to_csv(out + "housing.csv", index=False)
