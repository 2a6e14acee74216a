"""Object routes (filled in below milestone 1)."""
from fastapi import APIRouter

router = APIRouter()
