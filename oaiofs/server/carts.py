"""Cart downloads (placeholder router until the transfer service lands)."""
from fastapi import APIRouter

router = APIRouter()
