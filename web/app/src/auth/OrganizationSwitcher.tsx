import { useState } from "react";
import { useQuery } from "urql";
import { toAppError, type AppError } from "../api/errors";
import { ErrorNote } from "../components/Feedback";
import { useApp } from "../context";
import { MyOrganizationsDocument } from "../generated/graphql";
import { navigate } from "../router";

const ROLE_NAMES = { ADMIN: "Admin", EDITOR: "Editor", VIEWER: "Viewer" } as const;

/**
 * The organisation this session is in, and, for a member of several, a choice of the
 * others (switchOrganization: no password, the session moves). Everything of the old
 * organisation (cache, sockets, screens) is dropped, as at log-out.
 */
export function OrganizationSwitcher() {
  const { session, info } = useApp();
  const [{ data }] = useQuery({ query: MyOrganizationsDocument });
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<AppError | null>(null);
  const organizations = data?.me.organizations ?? [];
  const current = info.organization;

  async function choose(id: string) {
    if (id === current.id) return;
    setBusy(true);
    setFailure(null);
    try {
      await session.switchOrganization(id);
      // Ids in the address (a chat) belong to the organisation left behind.
      navigate({ name: "documents" }, true);
    } catch (error) {
      setFailure(toAppError(error));
    } finally {
      setBusy(false);
    }
  }

  if (organizations.length < 2) {
    return (
      <span className="who" title={info.user.email}>
        {current.name} · {ROLE_NAMES[current.role]}
      </span>
    );
  }
  return (
    <span className="org-switcher" title={info.user.email}>
      <label className="inline">
        <span className="visually-hidden">Organisation</span>
        <select value={current.id} disabled={busy} onChange={(event) => void choose(event.target.value)}>
          {organizations.map((organization) => (
            <option key={organization.id} value={organization.id}>
              {organization.name} · {ROLE_NAMES[organization.role]}
            </option>
          ))}
        </select>
      </label>
      {failure && <ErrorNote error={failure} />}
    </span>
  );
}
