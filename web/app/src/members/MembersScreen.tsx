import { useState, type FormEvent } from "react";
import { useMutation, useQuery } from "urql";
import { toAppError, type AppError } from "../api/errors";
import { ConfirmDialog } from "../components/ConfirmDialog";
import { Empty, ErrorNote, Spinner } from "../components/Feedback";
import { useApp } from "../context";
import {
  AddMemberDocument,
  ChangeMemberRoleDocument,
  MembersDocument,
  RemoveMemberDocument,
  type Role,
} from "../generated/graphql";

const ROLES: { value: Role; label: string; help: string }[] = [
  { value: "VIEWER", label: "Viewer", help: "searches and asks" },
  { value: "EDITOR", label: "Editor", help: "also uploads and deletes documents" },
  { value: "ADMIN", label: "Admin", help: "also manages members" },
];

export function MembersScreen() {
  const { info } = useApp();
  const [{ data, fetching, error }, refetch] = useQuery({ query: MembersDocument });
  const [, addMember] = useMutation(AddMemberDocument);
  const [, changeRole] = useMutation(ChangeMemberRoleDocument);
  const [, removeMember] = useMutation(RemoveMemberDocument);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("VIEWER");
  const [failure, setFailure] = useState<AppError | null>(null);
  const [removing, setRemoving] = useState<{ id: string; email: string } | null>(null);
  // Lowering your own role takes this screen away from you: asked first, like a removal.
  const [demoting, setDemoting] = useState<Role | null>(null);
  const reload = () => refetch({ requestPolicy: "network-only" });

  async function add(event: FormEvent) {
    event.preventDefault();
    setFailure(null);
    const result = await addMember({ email: email.trim(), role });
    if (result.error) return setFailure(toAppError(result.error));
    setEmail("");
    reload();
  }

  async function change(userId: string, next: Role) {
    setFailure(null);
    const result = await changeRole({ userId, role: next });
    if (result.error) setFailure(toAppError(result.error));
    reload();
  }

  async function remove() {
    if (!removing) return;
    const { id } = removing;
    setRemoving(null);
    setFailure(null);
    const result = await removeMember({ userId: id });
    if (result.error) setFailure(toAppError(result.error));
    reload();
  }

  const members = data?.organization.members ?? [];
  return (
    <div className="members">
      <h1 tabIndex={-1}>Members of {info.organization.name}</h1>
      <section className="panel" aria-labelledby="add-heading">
        <h2 id="add-heading">Add a member</h2>
        <p className="muted">The person needs an account already (they sign up first).</p>
        <form className="inline-form" onSubmit={(event) => void add(event)}>
          <label>
            Email
            <input type="email" required value={email} onChange={(event) => setEmail(event.target.value)} />
          </label>
          <label>
            Role
            <select value={role} onChange={(event) => setRole(event.target.value as Role)}>
              {ROLES.map((r) => (
                <option key={r.value} value={r.value}>
                  {r.label} — {r.help}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" className="button">
            Add
          </button>
        </form>
      </section>
      {failure && <ErrorNote error={failure} />}
      <section className="panel" aria-labelledby="members-heading">
        <h2 id="members-heading">Members</h2>
        {fetching && !data && <Spinner label="Loading members…" />}
        {error && !data && <ErrorNote error={toAppError(error)} onRetry={reload} />}
        {data && members.length === 0 && <Empty title="No members." />}
        <ul className="member-list">
          {members.map((member) => (
            <li key={member.user.id}>
              <span className="filename">
                {member.user.email}
                {member.user.id === info.user.id && <span className="muted"> (you)</span>}
              </span>
              <label className="inline">
                <span className="visually-hidden">Role of {member.user.email}</span>
                <select
                  value={member.role}
                  onChange={(event) => {
                    const next = event.target.value as Role;
                    if (member.user.id === info.user.id && next !== "ADMIN") setDemoting(next);
                    else void change(member.user.id, next);
                  }}
                >
                  {ROLES.map((r) => (
                    <option key={r.value} value={r.value}>
                      {r.label}
                    </option>
                  ))}
                </select>
              </label>
              <button
                type="button"
                className="button danger small"
                aria-label={`Remove ${member.user.email}`}
                onClick={() => setRemoving({ id: member.user.id, email: member.user.email })}
              >
                Remove
              </button>
            </li>
          ))}
        </ul>
      </section>
      <ConfirmDialog
        open={demoting !== null}
        title="Give up your admin role?"
        body={`You will no longer manage the members of ${info.organization.name}. Another admin can give the role back.`}
        confirmLabel="Change my role"
        danger
        onConfirm={() => {
          const next = demoting;
          setDemoting(null);
          if (next) void change(info.user.id, next);
        }}
        onCancel={() => setDemoting(null)}
      />
      <ConfirmDialog
        open={removing !== null}
        title="Remove this member?"
        body={`${removing?.email ?? ""} will lose access to this organisation at once.`}
        confirmLabel="Remove"
        danger
        onConfirm={() => void remove()}
        onCancel={() => setRemoving(null)}
      />
    </div>
  );
}
