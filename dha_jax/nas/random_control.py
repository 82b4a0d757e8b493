"""The random control of docs/method.md 3c: a genotype drawn uniformly (seeded) from the space a
strategy searches, inside the same budget, trained like the searched network's derived
one. A search that does not beat it over paired seeds has not shown anything (Li &
Talwalkar 2019; Yu et al. 2020). Each space draws its genotypes; this is the shared
rejection step."""


def draw_within_budget(draw, size, budget, what, tries=1000):
  """draw() until size(genotype) <= budget (no budget: the first draw): uniform over the
  genotypes inside the budget."""
  for _ in range(tries):
    g = draw()
    if not budget or size(g) <= budget:
      return g
  raise ValueError(f'{what}={budget:g}: no random genotype within it in {tries} draws; '
                   'raise the budget')
