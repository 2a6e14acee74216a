"""tus 1.0 uploads (placeholder router until the transfer service lands)."""
from fastapi import APIRouter

router = APIRouter()
