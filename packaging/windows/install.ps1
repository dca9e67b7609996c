<#
.SYNOPSIS
Installs the hostcert agent or tunnel as a Windows service from the extracted
hostcert-windows-amd64.zip.

.DESCRIPTION
Agent (the default): copies hostcert-agent.exe to -InstallDir, creates the
data directory %ProgramData%\hostcert (SYSTEM and Administrators only), writes
%ProgramData%\hostcert\agent.yaml, confirms the CA fingerprint
(hostcert-agent get-ca-cert --fingerprint), enrolls (get-cert, with a token
when the primary's security level needs one), registers the service
(automatic start, restart on failure) and starts it.

Tunnel (-Component tunnel): copies hostcert-tunnel.exe, writes
%ProgramData%\hostcert\tunnel.yaml, registers and starts the service.

Run it from an elevated PowerShell in the folder the zip was extracted to.
An existing configuration file is kept unless -Force is given. Running it
again upgrades the executable and restarts the service.

.EXAMPLE
.\install.ps1 -Primary hostcert.example.com:1556 -Fingerprint 'AB:CD:...:EF' -TokenFile C:\Temp\token.txt

.EXAMPLE
.\install.ps1 -Primary hostcert.example.com:1556 -Tunnels media1.example.com:1556 -Fingerprint 'AB:CD:...:EF'

.EXAMPLE
.\install.ps1 -Component tunnel -Allow 'hostcert.example.com:1556=10.0.0.5:1556' -ProxyProtocol
#>
[CmdletBinding()]
param(
    # What to install: agent (default) or tunnel.
    [ValidateSet('agent', 'tunnel')]
    [string]$Component = 'agent',

    # Agent: the primary's DNS name and port (required for the agent).
    [string]$Primary,
    # Agent: address to dial instead of -Primary (TLS still checks the name).
    [string]$PrimaryDial,
    # Agent: tunnels to try, in order, when the primary is not reachable directly.
    [string[]]$Tunnels = @(),
    # Agent: host name to enroll (default: the agent's choice, this host's name).
    [string]$Name,
    # Agent: the CA fingerprint (SHA-256, colon-separated hex) to confirm; without
    # it the agent shows the fingerprint and asks.
    [string]$Fingerprint,
    # Agent: enrollment token (prefer -TokenFile: a parameter may end up in the
    # shell history).
    [string]$Token,
    # Agent: file holding the enrollment token.
    [string]$TokenFile,
    # Agent: do not enroll now (enroll later with hostcert-agent get-cert).
    [switch]$SkipEnroll,

    # Tunnel: listen address.
    [string]$Listen = ':1556',
    # Tunnel: allowed destinations, 'target' or 'target=upstream'.
    [string[]]$Allow = @(),
    # Tunnel: relay client addresses to the primary with PROXY protocol v2.
    [switch]$ProxyProtocol,

    [string]$InstallDir = (Join-Path $env:ProgramFiles 'hostcert'),
    [string]$DataDir = (Join-Path $env:ProgramData 'hostcert'),
    # Overwrite an existing configuration file.
    [switch]$Force,
    # Register the service but do not start it.
    [switch]$NoStart
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Quote a string for YAML (single-quoted scalar: only ' needs doubling).
function ConvertTo-YamlString {
    param([Parameter(Mandatory = $true)][string]$Value)
    return "'" + ($Value -replace "'", "''") + "'"
}

# Run a hostcert executable; fail the installation on a non-zero exit code.
function Invoke-Hostcert {
    param(
        [Parameter(Mandatory = $true)][string]$Exe,
        [Parameter(Mandatory = $true)][string[]]$Arguments
    )
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "$(Split-Path -Leaf $Exe) $($Arguments[0]) failed (exit code $LASTEXITCODE)"
    }
}

# Write text as UTF-8 without a byte order mark.
function Write-TextFile {
    param(
        [Parameter(Mandatory = $true)][string]$Path,
        [Parameter(Mandatory = $true)][string]$Text
    )
    $utf8 = New-Object System.Text.UTF8Encoding -ArgumentList $false
    [System.IO.File]::WriteAllText($Path, $Text, $utf8)
}

# Full control for SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) only,
# inherited by everything below; no inherited entries from the parent.
function Set-PrivateAcl {
    param([Parameter(Mandatory = $true)][string]$Path)
    & icacls.exe $Path /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
    if ($LASTEXITCODE -ne 0) {
        throw "icacls $Path failed (exit code $LASTEXITCODE)"
    }
}

function New-AgentConfig {
    $lines = @(
        '# hostcert-agent configuration, written by install.ps1.',
        '# Keys and defaults: docs/packaging.md and the agent documentation.',
        "primary: $(ConvertTo-YamlString $Primary)"
    )
    if ($PrimaryDial) {
        $lines += "primary_dial: $(ConvertTo-YamlString $PrimaryDial)"
    }
    if ($Tunnels.Count -gt 0) {
        $lines += 'tunnels:'
        foreach ($t in $Tunnels) {
            $lines += "  - $(ConvertTo-YamlString $t)"
        }
    }
    $lines += "data_dir: $(ConvertTo-YamlString (Join-Path $DataDir 'agent'))"
    if ($Name) {
        $lines += "name: $(ConvertTo-YamlString $Name)"
    }
    $lines += 'log_format: json'
    $lines += 'log_level: info'
    return ($lines -join "`n") + "`n"
}

function New-TunnelConfig {
    $lines = @(
        '# hostcert-tunnel configuration, written by install.ps1.',
        "listen: $(ConvertTo-YamlString $Listen)",
        'allow:'
    )
    foreach ($a in $Allow) {
        $parts = $a.Split('=', 2)
        $lines += "  - target: $(ConvertTo-YamlString $parts[0])"
        if ($parts.Count -eq 2 -and $parts[1]) {
            $lines += "    upstream: $(ConvertTo-YamlString $parts[1])"
        }
    }
    if ($ProxyProtocol) {
        $lines += 'proxy_protocol: true'
    }
    return ($lines -join "`n") + "`n"
}

# --- checks before touching anything
$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal -ArgumentList $identity
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'install.ps1 must run from an elevated (Administrator) PowerShell'
}
if ($Component -eq 'agent' -and -not $Primary) {
    throw 'the agent needs -Primary HOST:PORT'
}
if ($Component -eq 'tunnel' -and $Allow.Count -eq 0) {
    throw 'the tunnel needs at least one -Allow TARGET[=UPSTREAM]'
}
if ($Token -and $TokenFile) {
    throw 'give -Token or -TokenFile, not both'
}

$service = "hostcert-$Component"
$source = Join-Path $PSScriptRoot "$service.exe"
if (-not (Test-Path -LiteralPath $source)) {
    throw "$source not found: run install.ps1 from the extracted zip"
}

# --- copy the executable (stopping a running service first, on upgrade)
$existing = Get-Service -Name $service -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') {
    Write-Host "stopping $service for the upgrade"
    Stop-Service -Name $service
}
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
$exe = Join-Path $InstallDir "$service.exe"
Copy-Item -LiteralPath $source -Destination $exe -Force
Invoke-Hostcert -Exe $exe -Arguments @('--version')

# --- data directory and configuration
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
Set-PrivateAcl -Path $DataDir
$config = Join-Path $DataDir "$Component.yaml"
if ((Test-Path -LiteralPath $config) -and -not $Force) {
    Write-Host "keeping the existing $config (-Force replaces it)"
} else {
    if ($Component -eq 'agent') {
        Write-TextFile -Path $config -Text (New-AgentConfig)
    } else {
        Write-TextFile -Path $config -Text (New-TunnelConfig)
    }
    Write-Host "wrote $config"
}

# --- agent: trust the CA (fingerprint confirmed), then enroll; an upgrade
# (the service exists already) keeps the trust store and certificate.
if ($Component -eq 'agent' -and $existing) {
    Write-Host "$service is already installed: upgraded the executable, kept its CA and certificate"
} elseif ($Component -eq 'agent') {
    $trust = @('get-ca-cert', '--config', $config, '--primary', $Primary)
    if ($Fingerprint) {
        $trust += @('--fingerprint', $Fingerprint)
    }
    Invoke-Hostcert -Exe $exe -Arguments $trust

    if (-not $SkipEnroll) {
        $enroll = @('get-cert', '--config', $config)
        if ($Name) {
            $enroll += @('--name', $Name)
        }
        $tempToken = $null
        try {
            if ($Token) {
                # Hand the token over in a file inside the private data directory,
                # never on a command line other processes can read.
                $tempToken = Join-Path $DataDir ("token-" + [Guid]::NewGuid().ToString('N') + '.txt')
                Write-TextFile -Path $tempToken -Text $Token
                $enroll += @('--token-file', $tempToken)
            } elseif ($TokenFile) {
                $enroll += @('--token-file', $TokenFile)
            }
            Invoke-Hostcert -Exe $exe -Arguments $enroll
        } finally {
            if ($tempToken) {
                Remove-Item -LiteralPath $tempToken -Force -ErrorAction SilentlyContinue
            }
        }
    }
}

# --- service: register once (automatic start, restart on failure), then start
if (-not $existing) {
    Invoke-Hostcert -Exe $exe -Arguments @('service', 'install', '--config', $config)
}
if ($NoStart) {
    Write-Host "$service is installed; start it with: Start-Service $service"
} else {
    Invoke-Hostcert -Exe $exe -Arguments @('service', 'start')
    Write-Host "$service is running"
}
