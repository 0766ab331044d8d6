import { createRouter, createWebHistory, type RouteRecordRaw, type RouteRecordSingleView, type Router } from 'vue-router'
import { PAGES, mayVisit, type PageName } from './roles'
import { useSession } from './session'

declare module 'vue-router' {
  interface RouteMeta {
    /** The sign-in page: open without a key. */
    public?: boolean
    /** The page (role rules in roles.ts). */
    page?: PageName
  }
}

const components: Record<PageName, RouteRecordSingleView['component']> = {
  overview: () => import('./pages/OverviewPage.vue'),
  budgets: () => import('./pages/BudgetsPage.vue'),
  iptokens: () => import('./pages/IpTokensPage.vue'),
  safety: () => import('./pages/SafetyPage.vue'),
  agents: () => import('./pages/AgentsPage.vue'),
  usage: () => import('./pages/MyUsagePage.vue'),
  requests: () => import('./pages/RequestsPage.vue'),
  audit: () => import('./pages/AuditPage.vue'),
}

export const routes: RouteRecordRaw[] = [
  { path: '/sign-in', name: 'sign-in', component: () => import('./pages/SignInPage.vue'), meta: { public: true } },
  ...PAGES.map((p): RouteRecordRaw => ({
    path: p.path,
    name: p.name,
    component: components[p.name],
    meta: { page: p.name },
  })),
  { path: '/:pathMatch(.*)*', name: 'not-found', component: () => import('./pages/NotFoundPage.vue') },
]

/** The router, with the sign-in and role guards. */
export function makeRouter(history = createWebHistory('/')): Router {
  const router = createRouter({ history, routes })
  router.beforeEach((to) => {
    const { signedIn, role } = useSession()
    if (to.meta.public) {
      if (signedIn.value && to.name === 'sign-in') {
        const redirect = typeof to.query.redirect === 'string' && to.query.redirect.startsWith('/') ? to.query.redirect : '/'
        return redirect
      }
      return true
    }
    if (!signedIn.value) {
      return to.fullPath === '/' ? { name: 'sign-in' } : { name: 'sign-in', query: { redirect: to.fullPath } }
    }
    // A page the role is not offered: back to the overview (the server would refuse anyway).
    if (to.meta.page && !mayVisit(role.value, to.meta.page)) return { name: 'overview' }
    return true
  })
  return router
}
