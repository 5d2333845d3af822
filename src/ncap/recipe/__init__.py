"""Recipes: a whole experimental protocol (models x datasets x budgets) in one TOML file."""

from ncap.recipe.estimate import estimate_compute
from ncap.recipe.plan import check_models, describe_plan
from ncap.recipe.run import run_recipe
from ncap.recipe.schema import Recipe, RecipeDataset, load_recipe

__all__ = [
    "Recipe",
    "RecipeDataset",
    "check_models",
    "describe_plan",
    "estimate_compute",
    "load_recipe",
    "run_recipe",
]
