"""Admin API (administrators only, else 403): the same operations as ``oaiofs user …``.

``GET /admin/users``, ``POST /admin/users`` ``{"username", "password", "is_admin"}``,
``PATCH /admin/users/{name}`` ``{"password"?, "disabled"?, "is_admin"?}``,
``DELETE /admin/users/{name}`` (see :mod:`oaiofs.server.admin` for what happens to the objects).
"""
from __future__ import annotations

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from sqlalchemy.orm import Session

from .. import protocol
from ..errors import Forbidden
from . import admin
from .deps import get_current_user, get_db
from .models import User

router = APIRouter(prefix=protocol.API_PREFIX, tags=["admin"])


def require_admin(user: User = Depends(get_current_user)) -> User:
    """The caller if they are an administrator, else 403."""
    if not user.is_admin:
        raise Forbidden("only administrators may manage users", {"username": user.username})
    return user


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr
    password: StrictStr
    is_admin: StrictBool = False


class UserChangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: StrictStr | None = None
    disabled: StrictBool | None = None
    is_admin: StrictBool | None = None


@router.get("/admin/users")
def list_users(_admin: User = Depends(require_admin), db: Session = Depends(get_db)) -> dict:
    """Every user with flags and counts."""
    return {"users": admin.list_users(db)}


@router.post("/admin/users", status_code=201)
def add_user(body: NewUserBody = Body(...), _admin: User = Depends(require_admin),
             db: Session = Depends(get_db)) -> dict:
    """Create a user (409 ``already_exists``)."""
    return admin.user_dict(db, admin.add_user(db, body.username, body.password, is_admin=body.is_admin))


@router.patch("/admin/users/{username}")
def change_user(username: str, body: UserChangeBody = Body(...), me: User = Depends(require_admin),
                db: Session = Depends(get_db)) -> dict:
    """Change the password (revokes the user's tokens), disable/enable, grant/revoke admin."""
    if body.password is not None:
        admin.set_password(db, username, body.password)
    if body.disabled is not None:
        admin.set_disabled(db, username, body.disabled, actor=me)
    if body.is_admin is not None:
        if not body.is_admin and me.username == username:
            raise Forbidden("an administrator cannot revoke their own admin right", {"username": username})
        admin.set_admin(db, username, body.is_admin)
    return admin.user_dict(db, admin.get_user(db, username))


@router.delete("/admin/users/{username}")
def delete_user(username: str, me: User = Depends(require_admin), db: Session = Depends(get_db)) -> dict:
    """Delete a user: shared objects are transferred, objects only they saw are deleted."""
    return admin.delete_user(db, username, actor=me)
